"""Our job API: submit, poll, cancel, server-sent events, 429 when the queue is full, retention."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from retouch.engine import Engine

from .conftest import GatedEngine, decode, payload


def wait_done(client: TestClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        view = client.get(f"/api/v1/jobs/{job_id}").json()
        if view["status"] in ("done", "failed", "cancelled"):
            return view
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def test_submit_poll_result_equals_sync_img2img(client: TestClient) -> None:
    r = client.post("/api/v1/jobs", json=payload(seed=99))
    assert r.status_code == 202
    created = r.json()
    assert set(created) == {"id", "status", "queue_position"} and created["status"] in ("queued", "running")
    view = wait_done(client, created["id"])
    assert view["status"] == "done" and view["progress"] == 1.0 and view["error"] is None
    assert view["sampling_steps"] == view["sampling_step"] > 0 and view["finished"] >= view["started"]
    sync = client.post("/sdapi/v1/img2img", json=payload(seed=99)).json()
    assert json.loads(view["result"]["info"])["all_seeds"] == [99]
    a = np.asarray(decode(view["result"]["images"][0]))
    b = np.asarray(decode(sync["images"][0]))
    assert np.array_equal(a, b)
    assert client.get(f"/api/v1/jobs/{created['id']}").json()["status"] == "done"  # retained


def test_bad_job_is_refused_at_submission(client: TestClient) -> None:
    r = client.post("/api/v1/jobs", json=payload(steps=0))
    assert r.status_code == 422 and "steps must be in [1, 10000]" in r.json()["detail"]


def test_mask_size_mismatch_is_refused_at_submission(client: TestClient) -> None:
    # Only masked needs mask and image of the same size; the plan refuses it before the job is queued.
    from .conftest import b64, square_mask

    r = client.post("/api/v1/jobs", json=payload(mask=b64(square_mask(32, 32))))
    assert r.status_code == 422 and "mask size 32x32 differs" in r.json()["detail"]


class FailingEngine:
    """An engine whose run fails the way a job can only fail once it runs (the plan accepted it)."""

    def __init__(self, inner: Engine) -> None:
        self.inner, self.model, self.preview = inner, inner.model, inner.preview

    def run(self, job: Any, **kwargs: Any) -> Any:
        from retouch.params import ParamError

        raise ParamError("init_images[0] could not be prepared: a test failure raised inside the engine")


def test_job_failing_in_the_engine_reports_its_error(make_client: Any, engine: Engine) -> None:
    client = make_client(FailingEngine(engine))
    job = client.post("/api/v1/jobs", json=payload()).json()
    view = wait_done(client, job["id"])
    assert view["status"] == "failed" and view["result"] is None
    assert view["error"]["error"] == "ParamError" and "raised inside the engine" in view["error"]["detail"]
    assert client.post("/api/v1/jobs", json=payload()).status_code == 202  # the worker is still alive


def test_cancel_queued_and_running_jobs_and_finished_is_409(make_client: Any, engine: Engine) -> None:
    gated = GatedEngine(engine, gate_step=2)
    client = make_client(gated)
    running = client.post("/api/v1/jobs", json=payload(steps=30, denoising_strength=1.0)).json()["id"]
    assert gated.reached.wait(30)
    queued = client.post("/api/v1/jobs", json=payload()).json()
    assert queued["status"] == "queued" and queued["queue_position"] == 0
    r = client.delete(f"/api/v1/jobs/{queued['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = client.delete(f"/api/v1/jobs/{running}")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    gated.release()
    view = wait_done(client, running)
    assert view["status"] == "cancelled" and view["result"] is None
    assert view["error"]["error"] == "JobCancelled"
    assert max(step for _, step in gated.steps) <= 3  # stopped within one sampler step
    assert client.delete(f"/api/v1/jobs/{running}").status_code == 409
    assert len(gated.steps) <= 3  # the cancelled queued job never ran


def test_queue_full_is_429_with_retry_after(make_client: Any, engine: Engine) -> None:
    gated = GatedEngine(engine, gate_step=1)
    client = make_client(gated, max_queue=2)
    first = client.post("/api/v1/jobs", json=payload()).json()["id"]
    assert gated.reached.wait(30)
    waiting = [client.post("/api/v1/jobs", json=payload(seed=s)).json()["id"] for s in (1, 2)]
    r = client.post("/api/v1/jobs", json=payload())
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "queue is full (2 jobs waiting)" in r.json()["detail"]
    r = client.post("/sdapi/v1/img2img", json=payload())
    assert r.status_code == 429
    gated.release()
    assert all(wait_done(client, j)["status"] == "done" for j in [first, *waiting])
    assert client.post("/api/v1/jobs", json=payload()).status_code == 202  # room again


def test_events_stream_progress_then_done(client: TestClient) -> None:
    job = client.post("/api/v1/jobs", json=payload(steps=8, denoising_strength=1.0, n_iter=2)).json()
    events = []
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) <= {"progress"}
    progress = [e["progress"] for _, e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0  # never goes backwards
    assert events[-1][1]["result"] is None  # the stream carries state; the result is fetched by GET
    assert wait_done(client, job["id"])["result"]["images"]


def test_events_for_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/api/v1/jobs/nope/events").status_code == 404


def test_results_expire_after_ttl_and_count(make_client: Any) -> None:
    client = make_client(result_ttl_s=0.5, max_results=1)
    a = client.post("/api/v1/jobs", json=payload()).json()["id"]
    wait_done(client, a)
    b = client.post("/api/v1/jobs", json=payload()).json()["id"]
    wait_done(client, b)
    assert client.get(f"/api/v1/jobs/{a}").status_code == 404  # over max_results
    time.sleep(0.6)
    r = client.get(f"/api/v1/jobs/{b}")
    assert r.status_code == 404 and "expired" in r.json()["detail"]


def test_force_task_id_is_the_job_id(client: TestClient) -> None:
    created = client.post("/api/v1/jobs", json=payload(force_task_id="task(img2img-ABC1234)")).json()
    assert created["id"] == "task(img2img-ABC1234)"
    assert wait_done(client, created["id"])["status"] == "done"
