"""The job queue on its own, with controllable fake runners (no model): FIFO, limits, control, retention."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest

from retouch.server.jobs import Job, JobCancelled, JobError, JobQueue, JobStatus, QueueFull


class Blocking:
    """A runner that records the order of jobs and blocks each until released."""

    def __init__(self) -> None:
        self.order: list[Any] = []
        self.started = threading.Semaphore(0)
        self.go = threading.Event()

    def __call__(self, job: Job) -> Any:
        self.order.append(job.payload)
        self.started.release()
        assert self.go.wait(10)
        if job.payload == "boom":
            raise RuntimeError("kaboom")
        if job.payload == "bad":
            raise JobError(422, "ParamError", "bad value")
        return f"result-{job.payload}"


@pytest.fixture
def runner() -> Blocking:
    return Blocking()


@pytest.fixture
def queue(runner: Blocking) -> Any:
    q = JobQueue(runner, max_queue=3, result_ttl_s=60, max_results=10)
    q.start()
    yield q
    runner.go.set()
    q.stop()


def test_jobs_run_in_fifo_order_and_results_arrive(queue: JobQueue, runner: Blocking) -> None:
    jobs = [queue.submit(0, job_count=1)]
    assert runner.started.acquire(timeout=5)  # job 0 runs; the other 3 fill the queue
    jobs += [queue.submit(i, job_count=1) for i in range(1, 4)]
    runner.go.set()
    assert [j.future.result(5) for j in jobs] == [f"result-{i}" for i in range(4)]
    assert runner.order == [0, 1, 2, 3]
    assert all(j.status is JobStatus.DONE and j.progress() == 1.0 for j in jobs)


def test_full_queue_raises_with_retry_after(queue: JobQueue, runner: Blocking) -> None:
    queue.submit("a", job_count=1)
    assert runner.started.acquire(timeout=5)  # "a" is running, so the queue is empty
    for name in "bcd":
        queue.submit(name, job_count=1)
    assert queue.queued == 3
    with pytest.raises(QueueFull) as info:
        queue.submit("e", job_count=1)
    assert info.value.retry_after >= 1
    assert "3 jobs waiting" in str(info.value)


def test_positions_and_cancel_of_a_queued_job(queue: JobQueue, runner: Blocking) -> None:
    first = queue.submit("a", job_count=1)
    assert runner.started.acquire(timeout=5)
    b, c = queue.submit("b", job_count=1), queue.submit("c", job_count=1)
    assert (queue.position(first), queue.position(b), queue.position(c)) == (None, 0, 1)
    assert queue.cancel(b.id) is b
    assert b.status is JobStatus.CANCELLED and queue.position(c) == 0
    with pytest.raises(JobCancelled):
        b.future.result(1)
    runner.go.set()
    assert c.future.result(5) == "result-c"
    assert runner.order == ["a", "c"]  # the cancelled job never ran


def test_cancel_running_job_sets_stop_flag_and_ends_cancelled(queue: JobQueue, runner: Blocking) -> None:
    job = queue.submit("a", job_count=1)
    assert runner.started.acquire(timeout=5)
    assert not job.should_stop()
    queue.cancel(job.id)
    assert job.should_stop() and job.status is JobStatus.RUNNING
    runner.go.set()
    with pytest.raises(JobCancelled):
        job.future.result(5)
    assert job.status is JobStatus.CANCELLED and job.result is None


def test_interrupt_and_skip_touch_only_the_running_job(queue: JobQueue, runner: Blocking) -> None:
    assert not queue.interrupt() and not queue.skip()  # idle
    running = queue.submit("a", job_count=2)
    assert runner.started.acquire(timeout=5)
    waiting = queue.submit("b", job_count=1)
    assert queue.skip()
    assert running.should_skip() and not waiting.should_skip()
    assert not running.should_skip()  # one-shot: only the batch running now is skipped
    assert queue.interrupt()
    assert running.should_stop() and not waiting.should_stop()
    runner.go.set()
    assert running.future.result(5) == "result-a"  # interrupted jobs still deliver (partial) results
    assert waiting.future.result(5) == "result-b"


def test_worker_survives_failures(queue: JobQueue, runner: Blocking) -> None:
    runner.go.set()
    boom, bad, ok = (queue.submit(p, job_count=1) for p in ("boom", "bad", "ok"))
    with pytest.raises(JobError) as e1:
        boom.future.result(5)
    assert e1.value.status_code == 500 and "RuntimeError: kaboom" in e1.value.detail
    with pytest.raises(JobError) as e2:
        bad.future.result(5)
    assert e2.value.status_code == 422 and e2.value.detail == "bad value"
    assert ok.future.result(5) == "result-ok"
    assert boom.status is JobStatus.FAILED and boom.error is e1.value


def test_progress_formula_matches_spec_5_6() -> None:
    job = Job(None, job_count=4)
    assert job.progress() == 0.0  # queued
    job.status = JobStatus.RUNNING
    job.started = time.time() - 10
    assert job.progress() == pytest.approx(0.01)
    job.on_step(1, 4, 3, 12)  # 0.01 + 1/4 + (1/4)(3/12)
    assert job.progress() == pytest.approx(0.01 + 0.25 + 0.0625)
    assert job.eta_relative(job.started + 10) == pytest.approx(10 / 0.3225 - 10)
    job.on_step(3, 4, 12, 12)
    assert job.progress() == 1.0  # clamped (0.01 + 3/4 + 1/4)


def test_retention_by_count_and_time() -> None:
    q = JobQueue(lambda job: job.payload, max_queue=10, result_ttl_s=0.3, max_results=2)
    q.start()
    try:
        jobs = [q.submit(i, job_count=1) for i in range(3)]
        for j in jobs:
            j.future.result(5)
        time.sleep(0.05)
        assert q.get(jobs[0].id) is None  # only the newest 2 are kept
        assert q.get(jobs[1].id) is jobs[1] and q.get(jobs[2].id) is jobs[2]
        time.sleep(0.4)
        assert q.get(jobs[2].id) is None  # expired
        unretained = q.submit("x", job_count=1, retain=False)
        assert unretained.future.result(5) == "x"
        time.sleep(0.05)
        assert q.get(unretained.id) is None
    finally:
        q.stop()


def test_duplicate_job_id_and_stop_cancels_queue(runner: Blocking) -> None:
    q = JobQueue(runner, max_queue=5)
    q.start()
    running = q.submit("a", job_count=1, job_id="task-1")
    assert runner.started.acquire(timeout=5)
    with pytest.raises(ValueError, match="task-1"):
        q.submit("b", job_count=1, job_id="task-1")
    waiting = q.submit("c", job_count=1)
    runner.go.set()
    q.stop()
    assert waiting.status is JobStatus.CANCELLED or waiting.status is JobStatus.DONE
    assert running.future.done()


def test_job_whose_client_went_away_is_skipped(queue: JobQueue, runner: Blocking) -> None:
    first = queue.submit("a", job_count=1)
    assert runner.started.acquire(timeout=5)
    gone = queue.submit("gone", job_count=1)
    assert gone.future.cancel()  # what asyncio.wrap_future does when the awaiting request is cancelled
    after = queue.submit("after", job_count=1)
    assert not first.future.cancel()  # a running job's future can no longer be cancelled
    runner.go.set()
    assert after.future.result(5) == "result-after"
    assert runner.order == ["a", "after"] and gone.status is JobStatus.CANCELLED
    assert first.future.result(5) == "result-a"


@pytest.mark.parametrize("fails", [False, True])
def test_current_job_is_cleared_before_its_future_resolves(fails: bool) -> None:
    """A client woken by the job's future (``/img2img`` returning) must never see that job as the
    current one in ``/progress``: the done callback runs when the future resolves, and by then
    ``current`` must already be None (it was the finished job, seen once in about 50 tries)."""

    def run(job: Job) -> Any:
        if fails:
            raise RuntimeError("boom")
        return "ok"

    q = JobQueue(run)
    q.start()
    try:
        seen: list[Any] = []
        job = q.submit("x", job_count=1)
        job.future.add_done_callback(lambda _: seen.append((q.current, job.status, job.finished is not None)))
        with pytest.raises(JobError) if fails else contextlib.nullcontext():
            job.future.result(timeout=10)
        assert seen == [(None, JobStatus.FAILED if fails else JobStatus.DONE, True)]
    finally:
        q.stop()

