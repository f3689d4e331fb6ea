"""uvicorn ``--factory`` targets for the real-process test and the fuzz run: a tiny model, auth on."""

from __future__ import annotations

from fastapi import FastAPI

from retouch.server import ServerConfig, create_app
from retouch.testing import tiny_model

AUTH = (("user", "pass"),)


def app() -> FastAPI:
    return create_app(tiny_model(seed=0), config=ServerConfig(api_auth=AUTH), precision="fp32")


def fuzz_app() -> FastAPI:
    """Small limits, so that every valid request a fuzzer builds finishes in well under a second."""
    config = ServerConfig(
        api_auth=AUTH, max_queue=4, max_output_pixels=64 * 64, max_image_pixels=256 * 256, max_steps=4,
        max_batch_size=2, max_n_iter=2, max_job_seconds=5.0, max_body_bytes=1 << 20,
    )
    return create_app(tiny_model(seed=0), config=config, precision="fp32")
