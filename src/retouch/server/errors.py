"""Error responses in A1111's shape, ``{error, detail, body, errors}`` (spec §5.1), for every failure.

A1111 answers most bad input with a 500 (A1111 issue #9467). Here every problem with a request is a 4xx
whose ``detail`` is one readable sentence naming the field and the allowed values; only a genuine server
fault is a 500, and it still comes back as JSON in the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from retouch.params import ParamError
from retouch.server.jobs import JobCancelled, JobError, QueueFull

__all__ = ["error_response", "install_error_handlers", "describe_validation_errors"]

log = logging.getLogger("retouch.server")


def error_response(
    status: int, error: str, detail: Any, *, errors: Any = "", headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A1111's error body. ``body`` is always empty: echoing a request of megabytes of base64 back
    helps nobody."""
    content = {"error": error, "detail": detail, "body": "", "errors": errors if errors != "" else detail}
    return JSONResponse(content, status_code=status, headers=dict(headers) if headers else None)


def _safe(value: Any) -> Any:
    """A JSON-safe, short rendering of an offending input value."""
    if value is None or isinstance(value, bool | int | str):
        text = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        return text
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_validation_errors(errors: list[dict[str, Any]], model_fields: tuple[str, ...] = ()) -> str:
    """One sentence per pydantic error: ``<field>: <message> (got <input>)``."""
    parts = []
    unknown = False
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        if err.get("type") == "extra_forbidden":
            parts.append(f"{where}: unknown field")
            unknown = True
            continue
        msg = err.get("msg", "invalid value")
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            parts.append(f"request body is not valid JSON: {ctx.get('error', msg)}")
            continue
        got = f" (got {_safe(err['input'])!r})" if "input" in err and err.get("type") != "missing" else ""
        parts.append(f"{where}: {msg}{got}")
    text = "; ".join(parts) or "invalid request"
    if unknown and model_fields:
        text += f". Allowed fields: {', '.join(model_fields)}"
    return text


def _json_safe_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": e.get("type"), "loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg")}
        for e in errors
    ]


def install_error_handlers(app: FastAPI, model_fields: tuple[str, ...] = ()) -> None:
    """Route every exception to :func:`error_response` with the right status."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = list(exc.errors())
        detail = describe_validation_errors(errs, model_fields)
        return error_response(422, "RequestValidationError", detail, errors=_json_safe_errors(errs))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not decode the body
            cause = exc.__cause__
            detail = f"request body could not be read ({type(cause).__name__}: {cause}); send a UTF-8 JSON object"
        return error_response(exc.status_code, "HTTPException", detail, headers=exc.headers)

    @app.exception_handler(ParamError)
    async def _param(request: Request, exc: ParamError) -> JSONResponse:
        return error_response(422, "ParamError", str(exc))

    @app.exception_handler(QueueFull)
    async def _full(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(429, "QueueFull", str(exc), headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(JobError)
    async def _job(request: Request, exc: JobError) -> JSONResponse:
        return error_response(exc.status_code, exc.error, exc.detail)

    @app.exception_handler(JobCancelled)
    async def _cancelled(request: Request, exc: JobCancelled) -> JSONResponse:
        return error_response(409, "JobCancelled", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, type(exc).__name__, f"internal server error: {type(exc).__name__}: {exc}")
