"""The ingress's job queue: the routes of ``retouch serve`` unchanged, the state on the board actor.

:class:`ClusterQueue` has :class:`~retouch.server.jobs.JobQueue`'s interface (``JobQueueLike``). It
admits a job on the board (the cluster-wide limit: 429 past it), then sends it to the model
deployment with the checkpoint as multiplexed model id. The routes read :class:`MirrorJob` objects:
local copies of board snapshots, refreshed on every lookup and by a poller while unfinished, so the
event stream and ``/progress`` see other replicas' jobs move.

A model replica that dies mid-job (its actor is killed, its node lost) fails the call with a Ray
actor error: the job goes back on the board and is sent once more (same job, same seed, so the same
image); a second death fails it with 503 ``ReplicaDied`` naming both errors. A job is never reported
done without the replica's result.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from retouch.scale.board import SNAPSHOT_FIELDS, Snapshot
from retouch.scale.replica import Outcome
from retouch.scale.settings import ClusterSettings
from retouch.server.a1111.options import OptionsStore
from retouch.server.a1111.translate import Submission
from retouch.server.jobs import Job, JobCancelled, JobError, JobStatus, QueueFull

__all__ = ["ClusterQueue", "MirrorJob", "SharedOptions", "ATTEMPTS"]

ATTEMPTS = 2  # a job whose replica dies is retried once
_POLL_S = 0.1


class MirrorJob(Job):
    """A board snapshot as a :class:`Job` for the routes; asking for a preview tells the board."""

    def __init__(self, board: Any, snap: Snapshot) -> None:
        self._board: Any = None
        super().__init__(None, job_count=snap["job_count"], job_id=snap["id"], retain=snap["retain"])
        self._board = board
        self.apply(snap)

    def apply(self, snap: Snapshot) -> None:
        for name in SNAPSHOT_FIELDS:
            object.__setattr__(self, name, snap[name])
        self.status = JobStatus(snap["status"])
        self.error = JobError(*snap["error"]) if snap["error"] is not None else None
        self.queue_position: int | None = snap["queue_position"]
        self.model, self.replica, self.attempt = snap["model"], snap["replica"], snap["attempt"]

    @property  # type: ignore[override]
    def preview_wanted(self) -> bool:
        return False

    @preview_wanted.setter
    def preview_wanted(self, value: bool) -> None:
        if value and self._board is not None:
            self._board.want_preview.remote(self.id)

    def settle_future(self) -> None:
        """Resolve :attr:`future` from the finished status (for ``/sdapi/v1/img2img``)."""
        if self.future.done() or not self.is_finished:
            return
        if self.status is JobStatus.DONE:
            self.future.set_result(self.result)
        elif self.status is JobStatus.CANCELLED:
            self.future.set_exception(JobCancelled(f"job {self.id} was cancelled"))
        else:
            self.future.set_exception(self.error or JobError(500, "JobFailed", f"job {self.id} failed"))


class SharedOptions(OptionsStore):
    """Server options kept on the board, so ``POST /sdapi/v1/options`` holds for every ingress."""

    def __init__(self, board: Any, model_title: str, model_names: tuple[str, ...], titles: dict[str, str]):
        super().__init__(model_title, model_names, titles)
        self._board = board
        self._defaults = self.snapshot_local()

    def snapshot_local(self) -> dict[str, Any]:
        return super().snapshot()

    def snapshot(self) -> dict[str, Any]:
        import ray

        return ray.get(self._board.options.remote(self._defaults))  # type: ignore[no-any-return]

    def update(self, raw: dict[str, Any]) -> dict[str, Any]:
        import ray

        values = self.validated(raw)
        return ray.get(self._board.set_options.remote(self._defaults, values))  # type: ignore[no-any-return]


class ClusterQueue:
    """``JobQueueLike`` over the board actor and the model deployment (see the module docstring)."""

    def __init__(self, board: Any, workers: Any, settings: ClusterSettings, options: SharedOptions) -> None:
        self.max_queue = settings.server.max_queue
        self._max_active = settings.max_active
        self._board = board
        self._workers = workers
        self._options = options
        self._titles = options._titles
        self._mirrors: dict[str, MirrorJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle (called on the ingress's event loop) ---------------------------------------------
    def start(self) -> None:
        self._spawn(self._poll())

    def stop(self, timeout: float = 10.0) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- JobQueueLike ---------------------------------------------------------------------------------
    def check_room(self) -> None:
        wait = self._call("check_room")
        if wait is not None:
            raise QueueFull(self._max_active, wait)

    def submit(self, payload: Submission, *, job_count: int, job_id: str | None = None, retain: bool = True) -> Job:
        model = self.model_of(payload)
        kind, value = self._call("admit", job_id, job_count, retain, model)
        if kind == "full":
            raise QueueFull(self._max_active, value)
        if kind == "duplicate":
            raise ValueError(value)
        job = self._mirror(value)
        self._spawn(self._dispatch(job, payload, model))
        return job

    def get(self, job_id: str) -> Job | None:
        snap = self._call("get", job_id)
        return None if snap is None else self._mirror(snap)

    def position(self, job: Job) -> int | None:
        return getattr(job, "queue_position", None) if job.status is JobStatus.QUEUED else None

    def cancel(self, job_id: str) -> Job | None:
        snap = self._call("cancel", job_id)
        return None if snap is None else self._mirror(snap)

    def interrupt(self, job_id: str | None = None) -> bool:
        return bool(self._call("interrupt", job_id))

    def skip(self, job_id: str | None = None) -> bool:
        return bool(self._call("skip", job_id))

    def listing(self) -> tuple[Job | None, list[Job], list[Job]]:
        current, queued, finished = self._call("listing")
        return (None if current is None else self._mirror(current), [self._mirror(s) for s in queued],
                [self._mirror(s) for s in finished])

    @property
    def current(self) -> Job | None:
        snap = self._call("current")
        return None if snap is None else self._mirror(snap)

    @property
    def queued(self) -> int:
        return int(self._call("stats").get("queued", 0))

    # -- internals ------------------------------------------------------------------------------------
    def model_of(self, sub: Submission) -> str:
        """The title of the checkpoint a submission asks for (its override, else the server option)."""
        name = (sub.request.override_settings or {}).get("sd_model_checkpoint")
        if name is None:
            name = self._options.snapshot()["sd_model_checkpoint"]
        return self._titles.get(str(name), self._options.model_names[0])

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self._board, method).remote(*args))

    def _mirror(self, snap: Snapshot) -> MirrorJob:
        job = self._mirrors.get(snap["id"])
        if job is None:
            job = MirrorJob(self._board, snap)
        else:
            job.apply(snap)
        if job.is_finished:
            self._mirrors.pop(job.id, None)
            job.settle_future()
        else:
            self._mirrors[job.id] = job
        return job

    async def _dispatch(self, job: MirrorJob, sub: Submission, model: str) -> None:
        outcome = await self._run_with_retry(job.id, sub, model)
        status, result, error = outcome
        if status == "skipped":  # cancelled before a replica claimed it: the board already says so
            snap = await self._board.get.remote(job.id)
        else:
            snap = await self._board.finish.remote(job.id, status, result, error)
        if snap is not None:
            self._mirror(snap)
        elif status == "done":
            job.status, job.result = JobStatus.DONE, result
            job.settle_future()

    async def _run_with_retry(self, job_id: str, sub: Submission, model: str) -> Outcome:
        import ray.exceptions as rex

        died = (rex.RayActorError, rex.ActorUnavailableError)
        errors: list[str] = []
        for attempt in range(1, ATTEMPTS + 1):
            try:
                handle = self._workers.options(multiplexed_model_id=model)
                return await handle.run.remote(job_id, sub)  # type: ignore[no-any-return]
            except died as exc:
                errors.append(f"attempt {attempt}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                if attempt < ATTEMPTS:
                    await self._board.requeue.remote(job_id, errors[-1])
            except Exception as exc:  # a replica that cannot load the model, a bad payload
                return "failed", None, (500, type(exc).__name__, f"generation failed: {exc}")
        detail = f"the model replica died while running the job, {ATTEMPTS} times: " + "; ".join(errors)
        return "failed", None, (503, "ReplicaDied", detail)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(_POLL_S)
            if not self._mirrors:
                continue
            with contextlib.suppress(Exception):  # a board hiccup must not end the poller
                snaps = await self._board.snapshots.remote(list(self._mirrors))
                for snap in snaps.values():
                    self._mirror(snap)
