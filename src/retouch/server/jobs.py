"""A bounded FIFO job queue with one worker thread, progress, interrupt, skip, cancel and retention.

A1111 serialises generations behind one global lock and has no job ids (A1111 issue #3786); here every
request becomes a :class:`Job` with an id, waiting in a FIFO queue of bounded length that one worker
thread drains (one model, one worker). The queue knows nothing about images: it calls ``run(job)`` and
stores whatever that returns. Progress follows spec §5.6.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import threading
import time
import uuid
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from retouch.params import ParamError

__all__ = ["Job", "JobError", "JobQueue", "JobQueueLike", "JobStatus", "QueueFull", "JobCancelled", "settle"]


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class QueueFull(Exception):
    """The queue holds ``max_queue`` waiting jobs; ``retry_after`` is a whole-second estimate."""

    def __init__(self, max_queue: int, retry_after: int) -> None:
        super().__init__(f"the job queue is full ({max_queue} jobs waiting); retry after {retry_after} s")
        self.retry_after = retry_after


class JobCancelled(Exception):
    """The job was cancelled before it finished."""


class JobError(Exception):
    """A job failed; ``status_code`` is the HTTP status its waiting request is answered with."""

    def __init__(self, status_code: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.error = error
        self.detail = detail


class Job:
    """One queued request. The worker thread writes the progress fields; readers only read them."""

    def __init__(self, payload: Any, *, job_count: int, job_id: str | None = None, retain: bool = True):
        self.id = job_id or uuid.uuid4().hex
        self.payload = payload
        self.retain = retain
        self.status = JobStatus.QUEUED
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.job_no = 0
        self.job_count = job_count
        self.sampling_step = 0
        self.sampling_steps = 0
        self.interrupted = False
        self.skipped = False
        self.cancel_requested = False
        self.result: Any = None
        self.error: JobError | None = None
        self.preview: Any = None
        self.preview_wanted = False
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._skip_pending = False
        self.version = 0

    # -- flags the engine polls -------------------------------------------------------------------
    def should_stop(self) -> bool:
        """True once the job was interrupted or cancelled (the engine stops within one step)."""
        return self.interrupted or self.cancel_requested

    def should_skip(self) -> bool:
        """True once per skip request: the engine reads it as "end the current batch" (spec §5.6)."""
        if self._skip_pending:
            self._skip_pending = False
            return True
        return False

    def request_skip(self) -> None:
        self.skipped = True
        self._skip_pending = True
        self.version += 1

    def on_step(self, job_no: int, job_count: int, step: int, steps: int) -> None:
        """Record one sampler step (engine ``StepInfo`` fields)."""
        self.job_no, self.job_count = job_no, job_count
        self.sampling_step, self.sampling_steps = step, steps
        self.version += 1

    # -- progress (spec §5.6) ---------------------------------------------------------------------
    def progress(self) -> float:
        """``0.01 + job_no/job_count + (1/job_count)(step/steps)``, clamped to 1; 0 before it runs and
        1 once finished."""
        if self.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED):
            return 1.0
        if self.status is JobStatus.QUEUED or self.job_count <= 0:
            return 0.0
        p = 0.01 + self.job_no / self.job_count
        if self.sampling_steps > 0:
            p += (1 / self.job_count) * (self.sampling_step / self.sampling_steps)
        return min(p, 1.0)

    def eta_relative(self, now: float | None = None) -> float:
        """Estimated seconds left: ``elapsed / progress - elapsed`` (spec §5.6); 0 when not running."""
        p = self.progress()
        if self.status is not JobStatus.RUNNING or self.started is None or p <= 0:
            return 0.0
        elapsed = (now if now is not None else time.time()) - self.started
        return max(elapsed / p - elapsed, 0.0)

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


def settle(run: Callable[[Job], Any], job: Job) -> tuple[JobStatus, Any, BaseException | None]:
    """Run ``job`` and say how it ended: ``(status, result, exception)``.

    :class:`JobError` fails the job with that status; :class:`JobCancelled` or a cancel request marks
    it cancelled; any other exception fails it with a 500 naming the exception.
    """
    cancelled = JobCancelled(f"job {job.id} was cancelled")
    try:
        result = run(job)
    except JobCancelled:
        return JobStatus.CANCELLED, None, cancelled
    except JobError as e:
        return JobStatus.FAILED, None, e
    except ParamError as e:  # found only when the job runs (e.g. a <lora:...> tag naming no file)
        return JobStatus.FAILED, None, JobError(422, "ParamError", str(e))
    except Exception as e:  # the worker must survive anything a job does
        return JobStatus.FAILED, None, JobError(500, type(e).__name__, f"generation failed: {type(e).__name__}: {e}")
    if job.cancel_requested:
        return JobStatus.CANCELLED, None, cancelled
    return JobStatus.DONE, result, None


class JobQueueLike(Protocol):
    """What the routes use of a queue: :class:`JobQueue` here, a cluster-wide one in ``retouch.scale``."""

    max_queue: int

    def start(self) -> None: ...
    def stop(self, timeout: float = 10.0) -> None: ...
    def submit(self, payload: Any, *, job_count: int, job_id: str | None = None, retain: bool = True) -> Job: ...
    def check_room(self) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def position(self, job: Job) -> int | None: ...
    def cancel(self, job_id: str) -> Job | None: ...
    def interrupt(self, job_id: str | None = None) -> bool: ...
    def skip(self, job_id: str | None = None) -> bool: ...
    def listing(self) -> tuple[Job | None, list[Job], list[Job]]: ...
    @property
    def current(self) -> Job | None: ...
    @property
    def queued(self) -> int: ...


class JobQueue:
    """FIFO of jobs drained by one worker thread calling ``run(job)``.

    ``run`` returns the job's result or raises: :class:`JobError` fails the job with that status;
    :class:`JobCancelled` or a cancel request marks it cancelled; any other exception fails it with a
    500 naming the exception. The worker never dies and never blocks on a client.
    """

    def __init__(
        self,
        run: Callable[[Job], Any],
        *,
        max_queue: int = 16,
        result_ttl_s: float = 600.0,
        max_results: int = 100,
    ) -> None:
        self._run = run
        self.max_queue = max_queue
        self.result_ttl_s = result_ttl_s
        self.max_results = max_results
        self._queue: collections.deque[Job] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._finished: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._cond = threading.Condition()
        self._current: Job | None = None
        self._durations: collections.deque[float] = collections.deque(maxlen=20)
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="retouch-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything queued, interrupt the running job and join the worker."""
        with self._cond:
            self._stopping = True
            while self._queue:
                self._cancel_queued(self._queue.popleft())
            if self._current is not None:
                self._current.cancel_requested = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- submitting and looking up ----------------------------------------------------------------
    def submit(self, payload: Any, *, job_count: int, job_id: str | None = None, retain: bool = True) -> Job:
        """Queue ``payload``; raises :class:`QueueFull` when ``max_queue`` jobs already wait, or
        ValueError when ``job_id`` is already in use."""
        with self._cond:
            self._prune()
            if self._stopping:
                raise QueueFull(self.max_queue, self._retry_after())
            if len(self._queue) >= self.max_queue:
                raise QueueFull(self.max_queue, self._retry_after())
            if job_id is not None and job_id in self._jobs:
                raise ValueError(f"a job with id {job_id!r} already exists")
            job = Job(payload, job_count=job_count, job_id=job_id, retain=retain)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._cond.notify_all()
            return job

    def check_room(self) -> None:
        """Raise :class:`QueueFull` now if a submission would be refused (lets callers skip costly
        preparation; :meth:`submit` checks again)."""
        with self._cond:
            if self._stopping or len(self._queue) >= self.max_queue:
                raise QueueFull(self.max_queue, self._retry_after())

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            self._prune()
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """0-based place of a queued job in the line (0 = next to run), None when not queued."""
        with self._cond:
            try:
                return self._queue.index(job)
            except ValueError:
                return None

    def listing(self) -> tuple[Job | None, list[Job], list[Job]]:
        """(running job, queued jobs in order, retained finished jobs newest first), one consistent view."""
        with self._cond:
            self._prune()
            current, finished = self._current, list(reversed(self._finished.values()))
            if current is not None and current.is_finished:  # finished, not yet retired by the worker
                if current.retain:
                    finished.insert(0, current)
                current = None
            return current, list(self._queue), finished

    @property
    def current(self) -> Job | None:
        """The running job; None when idle or once it has finished (its waiting client may already
        have its answer while the worker is still retiring it)."""
        job = self._current
        return job if job is not None and not job.is_finished else None

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- control ----------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once, or ask a running one to stop; None when the id is unknown."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status is JobStatus.QUEUED:
                self._queue.remove(job)
                self._cancel_queued(job)
                self._retire(job)
            elif job.status is JobStatus.RUNNING:
                job.cancel_requested = True
                job.version += 1
            return job

    def interrupt(self, job_id: str | None = None) -> bool:
        """Interrupt the running job (it returns its partial images); False when idle, or when
        ``job_id`` is given and is not the running job."""
        job = self.current
        if job is None or job_id is not None and job.id != job_id:
            return False
        job.interrupted = True
        job.version += 1
        return True

    def skip(self, job_id: str | None = None) -> bool:
        """End the running job's current batch; later batches still run. False when idle, or when
        ``job_id`` is given and is not the running job."""
        job = self.current
        if job is None or job_id is not None and job.id != job_id:
            return False
        job.request_skip()
        return True

    # -- the worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                if not job.future.set_running_or_notify_cancel():  # its waiting client went away
                    self._cancel_queued(job)
                    self._retire(job)
                    continue
                job.status = JobStatus.RUNNING
                job.started = time.time()
                self._current = job
            status, result, exc = self._execute(job)
            with self._cond:  # settled before the future wakes its client: /progress and the listing
                self._current = None  # never show a finished job as running, nor lose it
                self._mark(job, status, exc)
                self._durations.append((job.finished or time.time()) - (job.started or 0.0))
                self._retire(job)
            self._resolve(job, result, exc)

    def _execute(self, job: Job) -> tuple[JobStatus, Any, BaseException | None]:
        """Run ``job``; returns (final status, result, exception) without touching its future."""
        status, result, exc = settle(self._run, job)
        if status is JobStatus.DONE:
            job.result = result
        return status, result, exc

    @staticmethod
    def _finish(job: Job, status: JobStatus, *, result: Any = None, exc: BaseException | None = None) -> None:
        JobQueue._mark(job, status, exc)
        JobQueue._resolve(job, result, exc)

    @staticmethod
    def _mark(job: Job, status: JobStatus, exc: BaseException | None) -> None:
        job.finished = time.time()
        job.preview = None
        if isinstance(exc, JobError):
            job.error = exc
        job.status = status
        job.version += 1

    @staticmethod
    def _resolve(job: Job, result: Any, exc: BaseException | None) -> None:
        if job.future.done():  # cancelled by its waiting client: nobody to tell
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _cancel_queued(self, job: Job) -> None:
        job.cancel_requested = True
        self._finish(job, JobStatus.CANCELLED, exc=JobCancelled(f"job {job.id} was cancelled"))

    # -- retention (called with the lock held) ----------------------------------------------------
    def _retire(self, job: Job) -> None:
        if not job.retain:
            self._jobs.pop(job.id, None)
            return
        self._finished[job.id] = job
        self._prune()

    def _prune(self) -> None:
        now = time.time()
        while self._finished:
            oldest_id, oldest = next(iter(self._finished.items()))
            too_many = len(self._finished) > self.max_results
            expired = (oldest.finished or now) + self.result_ttl_s < now
            if not (too_many or expired):
                break
            self._finished.pop(oldest_id)
            self._jobs.pop(oldest_id, None)

    def _retry_after(self) -> int:
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, math.ceil(mean * (len(self._queue) + 1)))
