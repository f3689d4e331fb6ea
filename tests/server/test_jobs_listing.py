"""Job API additions: the queue listing, per-job live previews, per-job interrupt and skip."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

from PIL import Image

from retouch.engine import Engine

from .conftest import GatedEngine, payload
from .test_jobs_api import wait_done


class StepGates:
    """Wraps an engine and holds the sampler at each step in ``gates`` until :meth:`open` is called."""

    def __init__(self, inner: Engine, gates: tuple[int, ...]) -> None:
        self.inner, self.model, self.preview = inner, inner.model, inner.preview
        self.gates = gates
        self.reached = {g: threading.Event() for g in gates}
        self._open = {g: threading.Event() for g in gates}
        self.steps: list[tuple[int, int]] = []

    def open(self, step: int) -> None:
        self._open[step].set()

    def run(self, job: Any, on_step: Callable[..., None] | None = None, **kwargs: Any) -> Any:
        def step(info: Any) -> None:
            self.steps.append((info.job_no, info.step))
            if on_step is not None:
                on_step(info)
            if info.job_no == 0 and info.step in self.gates:
                self.reached[info.step].set()
                assert self._open[info.step].wait(30), "test never opened the gate"

        return self.inner.run(job, on_step=step, **kwargs)


def test_listing_shows_running_then_queued_then_finished(make_client: Any, engine: Engine) -> None:
    gated = GatedEngine(engine, gate_step=2)
    client = make_client(gated)
    assert client.get("/api/v1/jobs").json() == {"jobs": [], "running": 0, "queued": 0}
    running = client.post("/api/v1/jobs", json=payload(steps=10, denoising_strength=1.0)).json()["id"]
    assert gated.reached.wait(30)
    waiting = [client.post("/api/v1/jobs", json=payload(seed=s)).json()["id"] for s in (1, 2)]
    listing = client.get("/api/v1/jobs").json()
    assert listing["running"] == 1 and listing["queued"] == 2
    assert [(j["id"], j["status"], j["queue_position"]) for j in listing["jobs"]] == [
        (running, "running", None), (waiting[0], "queued", 0), (waiting[1], "queued", 1),
    ]
    assert listing["jobs"][0]["sampling_step"] == 2 and listing["jobs"][0]["result"] is None
    gated.release()
    for job_id in [running, *waiting]:
        wait_done(client, job_id)
    listing = client.get("/api/v1/jobs").json()
    assert [j["id"] for j in listing["jobs"]] == [waiting[1], waiting[0], running]  # newest first
    assert {j["status"] for j in listing["jobs"]} == {"done"} and listing["running"] == listing["queued"] == 0


def test_preview_of_a_running_job_is_its_png(make_client: Any, engine: Engine) -> None:
    gates = StepGates(engine, (2, 5))
    client = make_client(gates)
    body = payload(steps=10, denoising_strength=1.0, override_settings={"show_progress_every_n_steps": 1})
    job = client.post("/api/v1/jobs", json=body).json()["id"]
    assert gates.reached[2].wait(30)
    first = client.get(f"/api/v1/jobs/{job}/preview")  # none decoded yet; asks for the next one
    assert first.status_code == 204 and first.content == b""
    gates.open(2)
    assert gates.reached[5].wait(30)
    r = client.get(f"/api/v1/jobs/{job}/preview")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (64, 64) and len(set(image.convert("L").getdata())) > 1  # a real picture
    gates.open(5)
    assert wait_done(client, job)["status"] == "done"
    assert client.get(f"/api/v1/jobs/{job}/preview").status_code == 204  # finished: see its result
    assert client.get("/api/v1/jobs/nope/preview").status_code == 404


def test_interrupt_acts_on_the_named_job_only(make_client: Any, engine: Engine) -> None:
    gated = GatedEngine(engine, gate_step=2)
    client = make_client(gated)
    running = client.post("/api/v1/jobs", json=payload(steps=20, denoising_strength=1.0)).json()["id"]
    assert gated.reached.wait(30)
    queued = client.post("/api/v1/jobs", json=payload()).json()["id"]
    r = client.post(f"/api/v1/jobs/{queued}/interrupt")
    assert r.status_code == 409 and "it is queued, not running; DELETE cancels a queued job" in r.json()["detail"]
    r = client.post(f"/api/v1/jobs/{running}/interrupt")
    assert r.status_code == 200 and r.json()["interrupted"] is True
    gated.release()
    view = wait_done(client, running)
    assert view["status"] == "done" and view["interrupted"] is True and len(view["result"]["images"]) == 1
    assert max(step for _, step in gated.steps[:3]) <= 3  # stopped within one step of the gate
    assert wait_done(client, queued)["interrupted"] is False  # the next job ran in full
    r = client.post(f"/api/v1/jobs/{running}/interrupt")
    assert r.status_code == 409 and "it is done, not running" in r.json()["detail"]
    assert client.post("/api/v1/jobs/nope/skip").status_code == 404


def test_skip_ends_the_current_batch_only(make_client: Any, engine: Engine) -> None:
    gated = GatedEngine(engine, gate_step=2)
    client = make_client(gated)
    job = client.post("/api/v1/jobs", json=payload(steps=10, denoising_strength=1.0, n_iter=2)).json()["id"]
    assert gated.reached.wait(30)
    assert client.post(f"/api/v1/jobs/{job}/skip").status_code == 200
    gated.release()
    view = wait_done(client, job)
    assert view["status"] == "done" and len(view["result"]["images"]) == 2
    batch0 = [s for j, s in gated.steps if j == 0]
    batch1 = [s for j, s in gated.steps if j == 1]
    assert max(batch0) <= 3 and max(batch1) == 10


def test_a_finished_job_is_no_longer_current_even_before_the_worker_retires_it() -> None:
    from retouch.server.jobs import JobQueue

    queue = JobQueue(lambda job: "result")
    seen: dict[str, Any] = {}

    def on_done(_: Any) -> None:  # runs in the worker, between finishing the job and retiring it
        seen["current"] = queue.current
        seen["listing"] = queue.listing()
        seen["interrupt"] = queue.interrupt(job.id)

    job = queue.submit("payload", job_count=1)
    job.future.add_done_callback(on_done)  # registered before the worker can run the job
    queue.start()
    try:
        assert job.future.result(10) == "result"
    finally:
        queue.stop()
    assert seen["current"] is None and seen["interrupt"] is False
    running, queued, finished = seen["listing"]
    assert running is None and queued == [] and finished == [job]
