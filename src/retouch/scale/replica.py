"""The model deployment: each replica loads its checkpoints once and runs jobs from the board.

Requests name a checkpoint by its A1111 title as Ray Serve's multiplexed model id, so Serve routes
them to a replica that already holds that model, or loads it on the replica with the fewest models.
A replica runs one job at a time (``max_ongoing_requests=1``) through the same runner as
``retouch serve`` (:meth:`retouch.server.state.ServerState.run_job`), with a :class:`BoardJob` whose
flags and progress live on the board actor, so cancel and interrupt reach it from any ingress.
"""

from __future__ import annotations

import asyncio
from typing import Any

from retouch.scale.settings import ClusterSettings
from retouch.server.a1111.translate import Submission
from retouch.server.jobs import Job, JobCancelled, JobError, JobStatus, settle
from retouch.server.state import ServerState

__all__ = ["BoardJob", "Outcome", "run_from_board", "worker_class"]

#: How a job ended, as the replica returns it: (status, A1111 response body, (code, error, detail)).
Outcome = tuple[str, Any, tuple[int, str, str] | None]


class BoardJob(Job):
    """A job whose control flags and progress are kept on the board actor (one call per step)."""

    def __init__(self, board: Any, job_id: str, payload: Submission, job_count: int) -> None:
        self._board: Any = None
        super().__init__(payload, job_count=job_count, job_id=job_id)
        self._board = board
        self.status = JobStatus.RUNNING

    def on_step(self, job_no: int, job_count: int, step: int, steps: int) -> None:
        import ray

        super().on_step(job_no, job_count, step, steps)
        flags: dict[str, bool] = ray.get(self._board.step.remote(self.id, job_no, job_count, step, steps))
        self.interrupted, self.cancel_requested = flags["interrupted"], flags["cancel"]
        self._skip_pending = self._skip_pending or flags["skip"]
        self.preview_wanted = flags["preview"]

    @property  # type: ignore[override]
    def preview(self) -> Any:
        return None

    @preview.setter
    def preview(self, image: Any) -> None:
        if self._board is not None and image is not None:
            self._board.set_preview.remote(self.id, image)


def run_from_board(state: ServerState, board: Any, job_id: str, sub: Submission, replica: str) -> Outcome:
    """Claim ``job_id`` on the board and run it; ``("skipped", None, None)`` when it was cancelled
    (or is unknown) before this replica got to it."""
    import ray

    snap = ray.get(board.start.remote(job_id, replica))
    if snap is None:
        return "skipped", None, None
    job = BoardJob(board, job_id, sub, sub.job.n_iter)
    job.interrupted, job.cancel_requested = snap["interrupted"], snap["cancel_requested"]
    job.started = snap["started"]
    status, result, exc = settle(state.run_job, job)
    error = (exc.status_code, exc.error, exc.detail) if isinstance(exc, JobError) else None
    if isinstance(exc, JobCancelled):
        status = JobStatus.CANCELLED
    return status.value, result, error


def worker_class(models_per_replica: int) -> type:
    """The model deployment's class (``@serve.multiplexed`` needs the model count when the class is
    made, so it is made here)."""
    import ray
    from ray import serve

    class RetouchModel:
        def __init__(self, settings: ClusterSettings) -> None:
            from retouch.runtime import set_threads
            from retouch.scale.cluster import board_actor

            set_threads(settings.threads)
            self.settings = settings
            self.paths = {m.title: c for m, c in zip(settings.models(), settings.checkpoints, strict=True)}
            self.board = board_actor(settings)
            self.name = ray.get_runtime_context().get_actor_name() or "replica"

        @serve.multiplexed(max_num_models_per_replica=models_per_replica)
        async def state_for(self, model_id: str) -> ServerState:
            return await asyncio.to_thread(self._load, model_id)

        def _load(self, model_id: str) -> ServerState:
            from retouch.engine import Engine
            from retouch.models.loading import load_model

            if model_id not in self.paths:
                raise ValueError(f"model {model_id!r} is not served here; known: {', '.join(self.paths)}")
            s = self.settings
            engine = Engine(load_model(self.paths[model_id]), device=s.device, precision=s.precision,
                            **dict(s.engine_options))
            return ServerState(engine, s.server)

        async def run(self, job_id: str, sub: Submission) -> Outcome:
            state = await self.state_for(serve.get_multiplexed_model_id())
            return await asyncio.to_thread(run_from_board, state, self.board, job_id, sub, self.name)

    return RetouchModel
