"""A Retouch server in this process on a free port (uvicorn in a thread), for browser tests and the
screenshot script; and the Chromium launch the tests use (system Chromium, no calls home)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
#: Chromium calls Google hosts on its own; these rules make every name but ours fail to resolve.
CHROMIUM_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(engine: Any, routers: tuple[Any, ...] = (), **config: Any) -> Iterator[str]:
    """Serve ``create_app(engine=engine)`` (plus ``routers``) on 127.0.0.1 until the block ends;
    yields the base URL."""
    import uvicorn

    from retouch.server import ServerConfig, create_app

    app = create_app(engine=engine, config=ServerConfig(**config))
    for router in routers:
        app.include_router(router)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="retouch-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
