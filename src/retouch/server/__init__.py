"""The HTTP server: A1111-compatible routes (``/sdapi/v1``) and a job API (``/api/v1/jobs``), spec §5.

Needs the ``server`` extra (fastapi, uvicorn, pydantic). ``create_app`` builds the app; ``serve`` runs it.
"""

from retouch.server.app import create_app, serve
from retouch.server.config import ServerConfig

__all__ = ["create_app", "serve", "ServerConfig"]
