"""The web page: static HTML/CSS/JS served by the same app, talking only to its job API.

:func:`mount_webui` adds ``GET /`` (the page) and ``/webui/*`` (its ES modules and styles) to an app
that already has the ``/api/v1`` and ``/sdapi/v1`` routes; nothing else is needed, and nothing is
fetched from outside the server. The page lives in ``static/`` (package data, no build step).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["mount_webui", "STATIC_DIR"]

STATIC_DIR = Path(str(files("retouch.webui") / "static"))

#: The page changes with the package, not per request: let the browser revalidate every time.
_HEADERS = {"Cache-Control": "no-cache"}


def mount_webui(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/webui/`` on ``app``."""
    index = STATIC_DIR / "index.html"

    async def page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=_HEADERS)

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount("/webui", StaticFiles(directory=STATIC_DIR), name="webui")
