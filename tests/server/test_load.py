"""Load: 50 concurrent img2img requests against a real uvicorn server with a queue limit of 20.

Each request either completes or gets 429 with Retry-After; none is lost or mixed up: every completed
image equals a solo run with the same seed. Figures (wall time, p50/p95 latency) are printed; run with
``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import httpx
import numpy as np
import uvicorn

from retouch.engine import Engine
from retouch.server import ServerConfig, create_app
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.a1111.translate import build_submission

from .conftest import decode, payload

N_REQUESTS, QUEUE = 50, 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _fire(base: str, bodies: list[dict[str, Any]]) -> list[tuple[int, float, dict[str, Any], dict[str, str]]]:
    limits = httpx.Limits(max_connections=N_REQUESTS, max_keepalive_connections=N_REQUESTS)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        async def one(body: dict[str, Any]) -> tuple[int, float, dict[str, Any], dict[str, str]]:
            t0 = time.perf_counter()
            r = await client.post("/sdapi/v1/img2img", json=body)
            return r.status_code, time.perf_counter() - t0, r.json(), dict(r.headers)

        return await asyncio.gather(*(one(b) for b in bodies))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def test_fifty_concurrent_requests_at_queue_limit_twenty(engine: Engine) -> None:
    app = create_app(engine=engine, config=ServerConfig(max_queue=QUEUE))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        bodies = [payload(seed=1000 + i, prompt=f"request {i}") for i in range(N_REQUESTS)]
        t0 = time.perf_counter()
        results = asyncio.run(_fire(f"http://127.0.0.1:{port}", bodies))
        wall = time.perf_counter() - t0
        state = app.state.server
        options, config, names = state.options.snapshot(), state.config, state.model.names
    finally:
        server.should_exit = True
        thread.join(30)

    statuses = [s for s, *_ in results]
    assert set(statuses) <= {200, 429}, statuses  # nothing else: no 5xx, nothing lost
    done = [(i, r) for i, r in enumerate(results) if r[0] == 200]
    refused = [r for r in results if r[0] == 429]
    assert len(done) + len(refused) == N_REQUESTS
    assert len(done) >= QUEUE + 1  # the running job plus a full queue always get through
    for _, _, body, headers in refused:
        assert int(headers["retry-after"]) >= 1 and "queue is full" in body["detail"]
    for i, (_, _, body, _) in done:  # not mixed up: each answer belongs to its request ...
        info = json.loads(body["info"])
        assert info["all_seeds"] == [1000 + i] and info["prompt"] == f"request {i}"
        job = build_submission(Img2ImgRequest(**bodies[i]), options, config, names).job
        solo = np.asarray(engine.run(job).images[0].convert("RGB"))  # ... and equals a solo run
        assert np.array_equal(np.asarray(decode(body["images"][0]).convert("RGB")), solo), i

    ok_lat = [lat for _, lat, _, _ in (r for _, r in done)]
    no_lat = [lat for _, lat, _, _ in refused]
    print(
        f"\nload: {N_REQUESTS} requests, queue {QUEUE}: {len(done)} completed, {len(refused)} got 429; "
        f"wall {wall:.2f} s; completed p50 {_pct(ok_lat, 50):.2f} s p95 {_pct(ok_lat, 95):.2f} s; "
        f"429 p50 {_pct(no_lat, 50) * 1000:.0f} ms p95 {_pct(no_lat, 95) * 1000:.0f} ms"
    )
