"""One local Ray cluster for the tests of this package (2 CPUs, loopback, no dashboard), two tiny models.

Ray starts once and the Serve app is deployed once, so every test shares the slow start-up; the
fixtures are package-scoped, so the cluster is gone before the rest of the suite runs. The
tiny models are written as single-file checkpoints that the replicas load with ``load_model``;
references come from the same files in this process, through ``retouch serve``'s own app.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only; before Ray is imported

import pytest  # noqa: E402

pytest.importorskip("ray.serve", reason="the ray extra is not installed")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from retouch.engine import Engine  # noqa: E402
from retouch.models.ldm_layout import save_ldm_checkpoint  # noqa: E402
from retouch.models.loading import load_model  # noqa: E402
from retouch.server import ServerConfig, create_app  # noqa: E402
from retouch.testing import tiny_model  # noqa: E402

MAX_QUEUE = 4


@dataclass
class Cluster:
    url: str
    settings: Any
    board: Any
    checkpoints: dict[str, Path]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="package")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny models with different weights, as LDM single files."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {"a": folder / "tiny-a.safetensors", "b": folder / "tiny-b.safetensors"}
    for seed, key in enumerate(paths):
        save_ldm_checkpoint(tiny_model(seed=seed), paths[key])
    return paths


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[None]:
    from retouch.scale.cluster import ray_session

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        with ray_session(num_cpus=2, temp_dir=temp):
            yield
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="package")
def cluster(ray_cluster: None, checkpoints: dict[str, Path]) -> Iterator[Cluster]:
    """The Serve app on the session cluster: two replicas, both checkpoints, max_queue 4."""
    from ray import serve

    from retouch.scale.cluster import board_actor, drop_board
    from retouch.scale.deploy import APP_NAME, build_app
    from retouch.scale.settings import ClusterSettings

    settings = ClusterSettings(
        checkpoints=(str(checkpoints["a"]), str(checkpoints["b"])), replicas=2, cpus_per_replica=0,
        threads=1, precision="fp32", device="cpu", server=ServerConfig(max_queue=MAX_QUEUE),
        board_name=f"test-board-{uuid.uuid4().hex[:8]}",
    )
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
    try:
        yield Cluster(f"http://127.0.0.1:{port}", settings, board_actor(settings), checkpoints)
    finally:
        serve.delete(APP_NAME)
        drop_board(settings)
        serve.shutdown()


@pytest.fixture(scope="package")
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="package")
def reference(checkpoints: dict[str, Path]) -> Iterator[dict[str, TestClient]]:
    """``retouch serve``'s app in this process, one per checkpoint: the single-process answers."""
    clients = {}
    for key, path in checkpoints.items():
        engine = Engine(load_model(path), device="cpu", precision="fp32")
        clients[key] = TestClient(create_app(engine=engine))
        clients[key].__enter__()
    yield clients
    for c in clients.values():
        c.__exit__(None, None, None)
