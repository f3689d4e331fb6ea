"""ASGI middleware: HTTP Basic authentication (spec §5.1 ``--api-auth``) and a request-body size limit.

Both are plain ASGI wrappers, so they run before any routing or body parsing and answer in A1111's
error shape.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BasicAuthMiddleware", "BodyLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_error(send: Send, status: int, error: str, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": error, "detail": detail, "body": "", "errors": detail}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class BasicAuthMiddleware:
    """Require HTTP Basic credentials on every HTTP request (spec §5.1).

    Every configured pair is compared in constant time (``secrets.compare_digest`` over the UTF-8
    bytes of both user and password, all pairs checked), so timing reveals neither which part was
    wrong nor which user exists. Failure: 401 "Incorrect username or password" with
    ``WWW-Authenticate: Basic``.
    """

    def __init__(self, app: ASGIApp, credentials: tuple[tuple[str, str], ...]) -> None:
        self.app = app
        self.credentials = tuple((u.encode(), p.encode()) for u, p in credentials)

    def _authorised(self, header: bytes | None) -> bool:
        if header is None or header[:6].lower() != b"basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        ok = False
        for u, p in self.credentials:
            user_ok = secrets.compare_digest(user, u)
            pass_ok = secrets.compare_digest(password, p)
            ok |= bool(sep) and user_ok and pass_ok
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorised(_header(scope, b"authorization")):
            await self.app(scope, receive, send)
            return
        await _send_error(
            send, 401, "HTTPException", "Incorrect username or password", {"WWW-Authenticate": "Basic"}
        )


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, before the app parses anything.

    A declared ``Content-Length`` over the limit is refused at once; otherwise the body is read (at
    most ``max_bytes`` of it) and replayed to the app, so chunked uploads are bounded too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body is larger than this server's limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, 413, "PayloadTooLarge", self._too_large(), {"Connection": "close"})
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "PayloadTooLarge", self._too_large(), {"Connection": "close"})
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
