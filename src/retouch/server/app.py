"""The FastAPI app: factory, lifespan (loads the model once, starts the worker) and ``serve``.

``create_app`` takes a model path (loaded in the lifespan, never at import), a loaded
:class:`~retouch.models.bundle.ModelBundle` (tests inject ``retouch.testing.tiny_model()``), or a ready
engine. ``serve`` is what ``retouch serve`` calls. Routes: A1111's ``/sdapi/v1/*`` (spec §5) and our
``/api/v1/jobs`` job API (and ``/api/v1/fields``), plus the web page at ``/`` unless ``webui=False``;
HTTP Basic auth and the body-size limit wrap every route, the page included.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from retouch.server.config import ServerConfig, parse_api_auth
from retouch.server.errors import install_error_handlers
from retouch.server.middleware import BasicAuthMiddleware, BodyLimitMiddleware
from retouch.server.state import EngineLike, ServerState

__all__ = ["create_app", "serve"]

log = logging.getLogger("retouch.server")


def _make_engine(model: Any, engine: EngineLike | None, device: str | None, precision: str) -> EngineLike:
    if engine is not None:
        return engine
    from retouch.engine import Engine

    if isinstance(model, str):
        from retouch.models.loading import load_model

        log.info("loading model %s", model)
        model = load_model(model)
    if model is None:
        raise ValueError("create_app needs a model path, a loaded model or an engine")
    return Engine(model, device=device, precision=precision)


def create_app(
    model: Any = None,
    *,
    engine: EngineLike | None = None,
    config: ServerConfig | None = None,
    device: str | None = None,
    precision: str = "auto",
    webui: bool = True,
    state_factory: Callable[[ServerConfig], ServerState] | None = None,
) -> FastAPI:
    """Build the app. ``model``: a checkpoint path or name for ``load_model`` (e.g. "demo"), or a
    loaded ModelBundle; ``engine`` replaces both (anything with ``model`` and ``Engine.run``'s
    signature); ``state_factory`` replaces all three (``retouch.scale`` builds a cluster-backed state).
    ``webui``: serve the page at ``/`` (:mod:`retouch.webui`). Nothing is loaded until the app starts
    (its lifespan)."""
    from retouch.server.a1111.networks import router as networks_router
    from retouch.server.a1111.routes import router as a1111_router
    from retouch.server.a1111.schemas import Img2ImgRequest
    from retouch.server.api.fields import router as fields_router
    from retouch.server.api.routes import router as jobs_router

    cfg = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state_factory is not None:
            state = state_factory(cfg)
        else:
            state = ServerState(_make_engine(model, engine, device, precision), cfg)
        state.start()
        app.state.server = state
        try:
            yield
        finally:
            state.stop()

    app = FastAPI(
        title="Retouch",
        description="A1111-compatible img2img/inpainting API (/sdapi/v1) and a job API (/api/v1/jobs).",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app, tuple(Img2ImgRequest.model_fields))
    app.include_router(a1111_router)
    app.include_router(networks_router)
    app.include_router(jobs_router)
    app.include_router(fields_router)
    if webui:
        from retouch.webui import mount_webui

        mount_webui(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    if cfg.api_auth:
        app.add_middleware(BasicAuthMiddleware, credentials=cfg.api_auth)
    return app


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 7861,
    api_auth: str | None = None,
    max_queue: int = 16,
    precision: str = "auto",
    device: str | None = None,
    log_level: str = "info",
    threads: int | None = None,
    lora_dir: str | os.PathLike[str] | None = None,
    embeddings_dir: str | os.PathLike[str] | None = None,
    webui: bool = True,
    engine_options: dict[str, Any] | None = None,
    backend: str = "torch",
    **limits: Any,
) -> None:
    """Load ``model`` and serve the API with uvicorn until interrupted (``retouch serve``).

    ``api_auth`` is ``"user:pass[,user2:pass2]"``; ``limits`` are any other :class:`ServerConfig`
    fields (``max_steps``, ``max_batch_size``, ``max_n_iter``, ``max_image_pixels``,
    ``max_output_pixels``, ``max_body_bytes``, ``result_ttl_s``, ``max_results``, ``max_job_seconds``,
    ``styles_file``);
    an unknown name raises TypeError, a bad value ValueError. ``lora_dir``/``embeddings_dir``: the
    folders that ``<lora:...>`` tags and embedding names in prompts refer to. ``threads``: torch's CPU
    threads for the process (``runtime.set_threads``; default one per core). ``webui=False`` serves the
    API only. ``engine_options``: further ``Engine`` keywords (``vae_cache_size``, ``max_memory``,
    ``preset``). ``backend``: the Engine's (torch or openvino). The model is loaded here, before the port
    is bound, so a bad path fails at once with the loader's own error (FileNotFoundError/ValueError)
    instead of a server that starts and dies.
    """
    import uvicorn

    from retouch.engine import Engine
    from retouch.models.loading import load_model
    from retouch.runtime import set_threads

    set_threads(threads)  # ParamError is a ValueError: reported before anything loads
    config = ServerConfig(max_queue=max_queue, api_auth=parse_api_auth(api_auth), **limits)
    if config.styles_file:
        from retouch.styles import load_styles

        load_styles(config.styles_file)  # a missing or malformed file fails here, before the model loads
    log.info("loading model %s", model)
    engine = Engine(load_model(model), device=device, precision=precision, lora_dir=lora_dir,
                    embeddings_dir=embeddings_dir, backend=backend, **(engine_options or {}))
    app = create_app(engine=engine, config=config, webui=webui)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
