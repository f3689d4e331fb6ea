"""The job board and the retry rule on their own (no cluster): limits, control, retention, retries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ray.exceptions as rex

from retouch.scale.board import JobBoard
from retouch.scale.queue import ClusterQueue
from retouch.scale.settings import ClusterSettings
from retouch.server.jobs import Job, JobStatus


def admit(board: JobBoard, job_id: str | None = None, retain: bool = True) -> str:
    kind, snap = board.admit(job_id, 2, retain, "m")
    assert kind == "ok", snap
    return str(snap["id"])


def test_admission_limit_counts_queued_and_running_jobs_cluster_wide() -> None:
    board = JobBoard(max_active=3, replicas=2)
    ids = [admit(board) for _ in range(3)]
    assert board.admit(None, 1, True, "m")[0] == "full"
    assert board.check_room() is not None and board.check_room() >= 1
    assert board.start(ids[0], "r1") is not None
    assert board.admit(None, 1, True, "m")[0] == "full"  # running jobs count too
    board.finish(ids[0], "done", {"images": ["x"]}, None)
    assert board.check_room() is None
    assert board.admit("again", 1, True, "m")[0] == "ok"
    board.cancel(ids[1])
    assert board.admit("again", 1, True, "m") == ("duplicate", "a job with id 'again' already exists")
    assert board.stats()["peak"] == 3


def test_progress_flags_and_positions_follow_the_job_rules() -> None:
    board = JobBoard(max_active=8, replicas=1)
    a, b, c = admit(board), admit(board), admit(board)
    assert [board.get(i)["queue_position"] for i in (a, b, c)] == [0, 1, 2]
    board.start(a, "r1")
    assert board.step(a, 1, 2, 3, 4) == {"interrupted": False, "cancel": False, "skip": False, "preview": False}
    snap = board.get(a)
    job = Job(None, job_count=2)
    job.status, job.job_no, job.sampling_step, job.sampling_steps = JobStatus.RUNNING, 1, 3, 4
    assert snap["status"] == "running" and board.current()["id"] == a
    assert (snap["job_no"], snap["sampling_step"]) == (1, 3) and job.progress() == pytest.approx(0.885)
    assert board.skip() and board.step(a, 1, 2, 4, 4)["skip"] and not board.step(a, 1, 2, 4, 4)["skip"]
    assert board.interrupt() and board.step(a, 1, 2, 4, 4)["interrupted"]
    cancelled = board.cancel(b)  # queued: at once
    assert cancelled["status"] == "cancelled" and board.start(b, "r2") is None
    assert board.get(c)["queue_position"] == 0
    assert board.cancel(a)["cancel_requested"] and board.step(a, 1, 2, 4, 4)["cancel"]
    assert board.cancel("nope") is None


def test_requeue_retention_and_served_counts() -> None:
    board = JobBoard(max_active=8, replicas=2, max_results=1)
    a = admit(board)
    board.start(a, "r1")
    board.step(a, 0, 2, 2, 4)
    assert board.requeue(a, "r1 died") == 2
    snap = board.get(a)
    assert (snap["status"], snap["sampling_step"], snap["attempt"]) == ("queued", 0, 2)
    board.start(a, "r2")
    assert board.finish(a, "done", {"images": []}, None)["replica"] == "r2"
    gone = admit(board, retain=False)
    board.start(gone, "r2")
    assert board.finish(gone, "failed", None, (500, "E", "boom"))["error"] == (500, "E", "boom")
    assert board.get(gone) is None  # not retained
    b = admit(board)
    board.finish(b, "cancelled", None, None)
    assert board.get(a) is None and board.get(b) is not None  # max_results=1 keeps the newest
    assert board.stats()["served"] == {"r2": 1}


def test_options_are_shared_with_defaults_set_once() -> None:
    board = JobBoard(max_active=1, replicas=1)
    assert board.options({"x": 1}) == {"x": 1}
    assert board.set_options({"x": 9}, {"y": 2}) == {"x": 1, "y": 2}
    assert board.options({"x": 5}) == {"x": 1, "y": 2}


class _Remote:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        async def call() -> Any:
            return self.fn(*args)

        return call()


class _Workers:
    """A model deployment whose replicas die ``deaths`` times before one answers."""

    def __init__(self, deaths: int) -> None:
        self.deaths, self.models = deaths, []

    def options(self, multiplexed_model_id: str) -> _Workers:
        self.models.append(multiplexed_model_id)
        return self

    @property
    def run(self) -> _Remote:
        def run(job_id: str, sub: Any) -> Any:
            if self.deaths:
                self.deaths -= 1
                raise rex.ActorDiedError()
            return ("done", {"images": ["img"]}, None)

        return _Remote(run)


class _Board:
    def __init__(self) -> None:
        self.requeued: list[str] = []
        self.requeue = _Remote(lambda job_id, reason: self.requeued.append(reason))


@pytest.mark.parametrize("deaths", [0, 1, 2])
def test_a_dead_replica_is_retried_once_then_reported(deaths: int) -> None:
    queue = ClusterQueue.__new__(ClusterQueue)
    board, workers = _Board(), _Workers(deaths)
    queue._board, queue._workers = board, workers
    status, result, error = asyncio.run(queue._run_with_retry("j1", None, "model-a"))  # type: ignore[arg-type]
    assert workers.models == ["model-a"] * min(deaths + 1, 2)
    assert len(board.requeued) == min(deaths, 1)
    if deaths < 2:
        assert (status, result, error) == ("done", {"images": ["img"]}, None)
    else:
        assert (status, result) == ("failed", None)
        assert error[:2] == (503, "ReplicaDied") and "attempt 1" in error[2] and "attempt 2" in error[2]


def test_settings_from_serve_run_arguments() -> None:
    s = ClusterSettings.from_args({"model": "a.safetensors,b.safetensors", "replicas": "2", "max_queue": "3",
                                   "cpus_per_replica": "0.5", "api_auth": "u:p"})
    assert s.checkpoints == ("a.safetensors", "b.safetensors") and s.replicas == 2
    assert (s.server.max_queue, s.server.api_auth, s.cpus_per_replica, s.max_active) == (3, (("u", "p"),), 0.5, 5)
    auto = ClusterSettings.from_args({"min_replicas": "1", "max_replicas": "4"})
    assert auto.autoscaling and auto.capacity == 4
    with pytest.raises(ValueError, match="unknown argument"):
        ClusterSettings.from_args({"replica": "2"})
    with pytest.raises(ValueError, match="both min_replicas and max_replicas"):
        ClusterSettings(min_replicas=1)
    with pytest.raises(ValueError, match="must be a number"):
        ClusterSettings.from_args({"replicas": "two"})


def test_the_serve_run_builder_makes_an_application_and_names_bad_arguments() -> None:
    from ray.serve import Application

    import retouch.scale

    assert isinstance(retouch.scale.app({"model": "demo", "replicas": "2", "cpus_per_replica": "0.5"}), Application)
    with pytest.raises(ValueError, match="unknown argument.*replica"):
        retouch.scale.app({"model": "demo", "replica": "2"})
    with pytest.raises(FileNotFoundError, match="no model at"):
        retouch.scale.app({"model": "/nonexistent.safetensors"})
