"""``retouch serve --ray``: the same routes on two model replicas, state shared on the board actor."""

from __future__ import annotations

import base64
import io
import json
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


LONG_STEPS = 150


def wait_job(client: Any, job_id: str, until: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``GET /api/v1/jobs/{id}`` until ``until(view)``."""
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/api/v1/jobs/{job_id}").json()
        if until(view):
            return view  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, view
        time.sleep(0.05)


def running(view: dict[str, Any]) -> bool:
    return view["status"] == "running" and view["sampling_step"] >= 2


def finished(view: dict[str, Any]) -> bool:
    return view["status"] in ("done", "failed", "cancelled")


def second_ingress(cluster: Cluster) -> TestClient:
    """Another ingress, in this process, on the same board and model deployment."""
    from ray import serve

    from retouch.scale.deploy import APP_NAME, cluster_state
    from retouch.server import create_app

    workers = serve.get_deployment_handle("RetouchModel", app_name=APP_NAME)
    app = create_app(config=cluster.settings.server,
                     state_factory=lambda cfg: cluster_state(cluster.settings, workers, cfg))
    return TestClient(app)


def test_a_job_submitted_on_one_route_and_ingress_is_read_on_others(
    cluster: Cluster, http: httpx.Client, reference: dict[str, TestClient]
) -> None:
    body = payload(seed=77, steps=3)
    want = reference["a"].post("/sdapi/v1/img2img", json=body).json()
    with second_ingress(cluster) as other:
        created = http.post("/api/v1/jobs", json={**body, "force_task_id": "shared-1"})
        assert created.status_code == 202 and created.json()["id"] == "shared-1"
        view = wait_job(other, "shared-1", finished)  # read through the other ingress
        assert view["status"] == "done"
        same_images(view["result"], want)
        again = other.post("/api/v1/jobs", json={**body, "force_task_id": "shared-1"})
        assert again.status_code == 422 and "already exists" in again.json()["detail"]
        job_id = other.post("/api/v1/jobs", json=body).json()["id"]
        same_images(wait_job(http, job_id, finished)["result"], want)
        streamed = other.post("/api/v1/jobs", json=payload(seed=8, steps=40)).json()["id"]
        with http.stream("GET", f"/api/v1/jobs/{streamed}/events") as events:
            text = "".join(events.iter_text())
    kinds = [line[len("event: "):] for line in text.splitlines() if line.startswith("event: ")]
    progress = [json.loads(line[len("data: "):])["progress"] for line in text.splitlines() if line.startswith("data: ")]
    assert kinds[-1] == "done" and "progress" in kinds[:-1]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_interrupt_and_cancel_reach_jobs_on_the_replicas(cluster: Cluster, http: httpx.Client) -> None:
    long = payload(seed=5, steps=LONG_STEPS)
    first = http.post("/api/v1/jobs", json=long).json()["id"]
    wait_job(http, first, running)
    assert http.get("/sdapi/v1/progress").json()["state"]["job"] == first
    assert http.post("/sdapi/v1/interrupt").status_code == 200
    view = wait_job(http, first, finished)
    assert view["status"] == "done" and view["interrupted"]
    assert view["sampling_step"] < LONG_STEPS and len(view["result"]["images"]) == 1

    a, b = (http.post("/api/v1/jobs", json=long).json()["id"] for _ in range(2))
    wait_job(http, a, running)
    wait_job(http, b, running)
    third = http.post("/api/v1/jobs", json=long).json()
    assert third["status"] == "queued" and third["queue_position"] == 0
    cancelled = http.delete(f"/api/v1/jobs/{third['id']}").json()
    assert cancelled["status"] == "cancelled"  # a queued job is cancelled at once
    stopping = http.delete(f"/api/v1/jobs/{a}").json()
    assert stopping["status"] == "running" and stopping["cancel_requested"]
    view = wait_job(http, a, finished)
    assert view["status"] == "cancelled" and view["result"] is None
    assert view["error"]["error"] == "JobCancelled"
    http.post("/sdapi/v1/interrupt")
    assert wait_job(http, b, finished)["status"] == "done"
    assert wait_job(http, third["id"], finished)["status"] == "cancelled"  # never run later


def board_job(cluster: Cluster, job_id: str) -> dict[str, Any]:
    snap = ray.get(cluster.board.get.remote(job_id))
    assert snap is not None
    return snap  # type: ignore[no-any-return]


def test_two_checkpoints_are_routed_to_replicas_that_hold_them(
    cluster: Cluster, http: httpx.Client, reference: dict[str, TestClient]
) -> None:
    titles = [m["title"] for m in http.get("/sdapi/v1/sd-models").json()]
    assert [t.split(" ")[0] for t in titles] == ["tiny-a.safetensors", "tiny-b.safetensors"]
    body = {"a": payload(seed=3, steps=2), "b": payload(seed=3, steps=2,
                                                       override_settings={"sd_model_checkpoint": titles[1]})}
    want = {k: reference[k].post("/sdapi/v1/img2img", json=v).json() for k, v in body.items()}
    assert not np.array_equal(pixels(want["a"]["images"][0]), pixels(want["b"]["images"][0]))
    warm = http.post("/sdapi/v1/img2img", json=body["b"])  # loads b on one replica
    assert warm.status_code == 200, warm.text
    time.sleep(2)  # the replica's model list reaches the router
    replicas: dict[str, set[str]] = {"a": set(), "b": set()}
    for key in "abab":
        created = http.post("/api/v1/jobs", json=body[key])
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        view = wait_job(http, job_id, finished)
        same_images(view["result"], want[key])
        snap = board_job(cluster, job_id)
        assert snap["model"] == titles["ab".index(key)]
        replicas[key].add(snap["replica"])
    assert len(replicas["a"]) == len(replicas["b"]) == 1 and replicas["a"] != replicas["b"], replicas


def test_a_replica_killed_mid_job_is_retried_with_the_same_image(
    cluster: Cluster, http: httpx.Client, reference: dict[str, TestClient]
) -> None:
    body = payload(seed=11, steps=60)
    job_id = http.post("/api/v1/jobs", json=body).json()["id"]
    wait_job(http, job_id, running)
    victim = board_job(cluster, job_id)["replica"]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    view = wait_job(http, job_id, finished, timeout=120)
    assert view["status"] == "done", view["error"]
    snap = board_job(cluster, job_id)
    assert snap["attempt"] == 2 and snap["replica"] != victim
    same_images(view["result"], reference["a"].post("/sdapi/v1/img2img", json=body).json())


def test_the_local_cluster_listens_on_loopback(cluster: Cluster) -> None:
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
