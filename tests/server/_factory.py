"""uvicorn ``--factory`` target for the real-process test: the app around a tiny model, auth on."""

from __future__ import annotations

from fastapi import FastAPI

from retouch.server import ServerConfig, create_app
from retouch.testing import tiny_model


def app() -> FastAPI:
    return create_app(tiny_model(seed=0), config=ServerConfig(api_auth=(("user", "pass"),)), precision="fp32")
