"""``retouch serve --ray``: the same routes on two model replicas, state shared on the board actor."""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import ray
from fastapi.testclient import TestClient
from PIL import Image

from server.conftest import payload

from .conftest import MAX_QUEUE, Cluster


def pixels(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def same_images(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert len(got["images"]) == len(want["images"]) >= 1
    for a, b in zip(got["images"], want["images"], strict=True):
        np.testing.assert_array_equal(pixels(a), pixels(b))


def served(cluster: Cluster) -> dict[str, int]:
    return dict(ray.get(cluster.board.stats.remote())["served"])


def test_concurrent_requests_spread_over_replicas_with_a_cluster_wide_limit(
    cluster: Cluster, http: httpx.Client, reference: dict[str, TestClient]
) -> None:
    before = served(cluster)
    bodies = [payload(seed=100 + i, steps=2) for i in range(40)]
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda b: http.post("/sdapi/v1/img2img", json=b), bodies))
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429}, codes
    done = [i for i, c in enumerate(codes) if c == 200]
    refused = [i for i, c in enumerate(codes) if c == 429]
    assert done and refused, codes
    for i in refused:
        assert answers[i].json()["error"] == "QueueFull"
        assert int(answers[i].headers["Retry-After"]) >= 1
    for i in done:
        same_images(answers[i].json(), reference["a"].post("/sdapi/v1/img2img", json=bodies[i]).json())
    stats = ray.get(cluster.board.stats.remote())
    assert stats["peak"] <= MAX_QUEUE + 2
    after = served(cluster)
    per_replica = {r: after[r] - before.get(r, 0) for r in after}
    assert len([n for n in per_replica.values() if n > 0]) == 2, per_replica
    assert sum(per_replica.values()) == len(done)
