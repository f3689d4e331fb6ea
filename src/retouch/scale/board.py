"""The cluster's job board: ids, progress, flags, results and the queue limit, in one Ray actor.

Every ingress replica and every model replica talks to the same named actor, so a job submitted
through one route or replica can be read, cancelled or interrupted through any other, and the queue
limit holds cluster-wide. The board stores :class:`retouch.server.jobs.Job` objects (the progress
and ETA formulas are theirs) and answers with plain, picklable snapshots. No Ray import here: the
class is made an actor by :func:`retouch.scale.cluster.board_actor`, and tests use it directly.

Only the ingress that dispatched a job writes its end (``finish``/``requeue``), so a replica that
dies mid-job can be retried without a second writer racing it.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any

from retouch.server.jobs import Job, JobStatus

__all__ = ["JobBoard", "Snapshot", "SNAPSHOT_FIELDS"]

#: A job as the board reports it: the Job attributes below, plus status (its value), error
#: ``(status_code, error, detail)`` or None, queue_position, model, replica and attempt.
Snapshot = dict[str, Any]

SNAPSHOT_FIELDS = (
    "id", "created", "started", "finished", "job_no", "job_count", "sampling_step", "sampling_steps",
    "interrupted", "skipped", "cancel_requested", "result", "preview", "version", "retain",
)


class JobBoard:
    """Cluster-wide job state. ``max_active``: jobs queued or running at once; ``replicas``: how many
    run at once (for Retry-After); results are kept ``result_ttl_s`` seconds, at most ``max_results``."""

    def __init__(self, max_active: int, replicas: int, result_ttl_s: float = 600.0, max_results: int = 100):
        self.max_active = max_active
        self.replicas = max(1, replicas)
        self.result_ttl_s = result_ttl_s
        self.max_results = max_results
        self._jobs: dict[str, Job] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._durations: collections.deque[float] = collections.deque(maxlen=20)
        self._options: dict[str, Any] | None = None
        self.peak = 0
        self.served: collections.Counter[str] = collections.Counter()

    # -- admission ----------------------------------------------------------------------------------
    def _active(self) -> list[Job]:
        return [j for j in self._jobs.values() if not j.is_finished]

    def _retry_after(self) -> int:
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        waiting = sum(1 for j in self._jobs.values() if j.status is JobStatus.QUEUED)
        return max(1, math.ceil(mean * (waiting + 1) / self.replicas))

    def check_room(self) -> int | None:
        """None when a job would be admitted now, else the Retry-After seconds."""
        self._prune()
        return None if len(self._active()) < self.max_active else self._retry_after()

    def admit(self, job_id: str | None, job_count: int, retain: bool, model: str) -> tuple[str, Any]:
        """``("ok", snapshot)``, ``("full", retry_after)`` or ``("duplicate", message)``."""
        wait = self.check_room()
        if wait is not None:
            return "full", wait
        if job_id is not None and job_id in self._jobs:
            return "duplicate", f"a job with id {job_id!r} already exists"
        job = Job(None, job_count=job_count, job_id=job_id, retain=retain)
        self._jobs[job.id] = job
        self._meta[job.id] = {"model": model, "replica": None, "attempt": 1}
        self.peak = max(self.peak, len(self._active()))
        return "ok", self._snapshot(job)

    # -- the model replica's side -------------------------------------------------------------------
    def start(self, job_id: str, replica: str) -> Snapshot | None:
        """Mark the job running on ``replica``; None when it is gone or no longer queued (cancelled)."""
        job = self._jobs.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            return None
        job.status, job.started = JobStatus.RUNNING, time.time()
        job.version += 1
        self._meta[job_id]["replica"] = replica
        return self._snapshot(job)

    def step(self, job_id: str, job_no: int, job_count: int, step: int, steps: int) -> dict[str, bool]:
        """Record one sampler step; answer the flags the engine polls (stop, skip once, preview)."""
        job = self._jobs.get(job_id)
        if job is None:
            return {"interrupted": False, "cancel": True, "skip": False, "preview": False}
        job.on_step(job_no, job_count, step, steps)
        return {
            "interrupted": job.interrupted, "cancel": job.cancel_requested, "skip": job.should_skip(),
            "preview": job.preview_wanted,
        }

    def set_preview(self, job_id: str, image: Any) -> None:
        job = self._jobs.get(job_id)
        if job is not None and not job.is_finished:
            job.preview, job.preview_wanted = image, False
            job.version += 1

    # -- the dispatching ingress's side -------------------------------------------------------------
    def requeue(self, job_id: str, reason: str) -> int:
        """Put a job whose replica died back in the line; returns its new attempt number."""
        job = self._jobs[job_id]
        meta = self._meta[job_id]
        meta["attempt"] += 1
        meta.setdefault("retries", []).append(reason)
        if not job.is_finished:
            job.status, job.started = JobStatus.QUEUED, None
            job.job_no = job.sampling_step = job.sampling_steps = 0
            job.version += 1
        return int(meta["attempt"])

    def finish(self, job_id: str, status: str, result: Any, error: tuple[int, str, str] | None) -> Snapshot | None:
        """Record how the job ended (a job cancelled while queued stays cancelled)."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if not job.is_finished:
            self._end(job, JobStatus(status), result, error)
            if job.started is not None:
                self._durations.append(job.finished - job.started)  # type: ignore[operator]
            replica = self._meta[job_id]["replica"]
            if job.status is JobStatus.DONE and replica:
                self.served[replica] += 1
        snap = self._snapshot(job)
        self._retire(job)
        return snap

    # -- any ingress: control and reading -----------------------------------------------------------
    def cancel(self, job_id: str) -> Snapshot | None:
        """Cancel a queued job at once, or ask a running one to stop; None when unknown."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.status is JobStatus.QUEUED:
            job.cancel_requested = True
            self._end(job, JobStatus.CANCELLED, None, None)
            self._retire(job)
        elif job.status is JobStatus.RUNNING:
            job.cancel_requested = True
            job.version += 1
        return self._snapshot(job)

    def interrupt(self, job_id: str | None = None) -> bool:
        """Interrupt every running job, or only ``job_id`` (each returns its partial images); False when
        none of them runs."""
        running = [j for j in self._running() if job_id is None or j.id == job_id]
        for job in running:
            job.interrupted = True
            job.version += 1
        return bool(running)

    def skip(self, job_id: str | None = None) -> bool:
        """End the current batch of every running job, or only of ``job_id``; False when none runs."""
        running = [j for j in self._running() if job_id is None or j.id == job_id]
        for job in running:
            job.request_skip()
        return bool(running)

    def want_preview(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None and job.status is JobStatus.RUNNING:
            job.preview_wanted = True

    def get(self, job_id: str) -> Snapshot | None:
        self._prune()
        job = self._jobs.get(job_id)
        return None if job is None else self._snapshot(job)

    def snapshots(self, job_ids: list[str]) -> dict[str, Snapshot]:
        return {i: self._snapshot(self._jobs[i]) for i in job_ids if i in self._jobs}

    def current(self) -> Snapshot | None:
        """The running job that started first (A1111's single "current job"), None when idle."""
        running = self._running()
        return self._snapshot(min(running, key=lambda j: j.started or 0.0)) if running else None

    def listing(self) -> tuple[Snapshot | None, list[Snapshot], list[Snapshot]]:
        """(current job, queued jobs in order, retained finished jobs newest first), as ``JobQueue.listing``."""
        self._prune()
        queued = [self._snapshot(j) for j in self._jobs.values() if j.status is JobStatus.QUEUED]
        finished = [self._snapshot(self._jobs[i]) for i in reversed(self._finished) if i in self._jobs]
        return self.current(), queued, finished

    def stats(self) -> dict[str, Any]:
        by_status = collections.Counter(j.status.value for j in self._jobs.values())
        return {"peak": self.peak, "max_active": self.max_active, "served": dict(self.served), **by_status}

    # -- shared server options ----------------------------------------------------------------------
    def options(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The cluster's option values (``defaults`` the first time anyone asks)."""
        if self._options is None:
            self._options = dict(defaults)
        return dict(self._options)

    def set_options(self, defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        self.options(defaults)
        assert self._options is not None
        self._options.update(values)
        return dict(self._options)

    # -- internals ----------------------------------------------------------------------------------
    def _running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.status is JobStatus.RUNNING]

    @staticmethod
    def _end(job: Job, status: JobStatus, result: Any, error: tuple[int, str, str] | None) -> None:
        from retouch.server.jobs import JobError

        job.status, job.finished, job.preview = status, time.time(), None
        job.result = result if status is JobStatus.DONE else None
        job.error = JobError(*error) if error is not None else None
        job.version += 1

    def _snapshot(self, job: Job) -> Snapshot:
        snap: Snapshot = {name: getattr(job, name) for name in SNAPSHOT_FIELDS}
        snap["status"] = job.status.value
        err = job.error
        snap["error"] = None if err is None else (err.status_code, err.error, err.detail)
        snap["queue_position"] = self._position(job)
        snap.update({k: v for k, v in self._meta[job.id].items() if k != "retries"})
        return snap

    def _position(self, job: Job) -> int | None:
        if job.status is not JobStatus.QUEUED:
            return None
        queued = [j for j in self._jobs.values() if j.status is JobStatus.QUEUED]
        return queued.index(job)

    def _retire(self, job: Job) -> None:
        if not job.retain:
            self._jobs.pop(job.id, None)
            self._meta.pop(job.id, None)
            return
        self._finished[job.id] = None
        self._prune()

    def _prune(self) -> None:
        now = time.time()
        while self._finished:
            oldest = next(iter(self._finished))
            job = self._jobs.get(oldest)
            expired = job is None or (job.finished or now) + self.result_ttl_s < now
            if not (len(self._finished) > self.max_results or expired):
                break
            self._finished.pop(oldest)
            self._jobs.pop(oldest, None)
            self._meta.pop(oldest, None)
