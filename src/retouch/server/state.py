"""What one running server holds: the engine, its job queue, the option defaults, and the job runner.

The runner is the only code that calls ``Engine.run`` (directly, or through a script recipe of
:mod:`retouch.recipes`); it wires the job's flags to ``should_stop`` /
``should_skip`` (spec §5.6), records progress, decodes a live preview only when a client asked for one,
enforces ``max_job_seconds``, and turns the result into A1111's response in the worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from retouch.engine import Result, StepInfo
from retouch.params import Img2Img, ParamError
from retouch.recipes import Hooks, run_script
from retouch.server.a1111.options import OptionsStore
from retouch.server.a1111.respond import build_response
from retouch.server.a1111.translate import Submission
from retouch.server.config import ServerConfig
from retouch.server.jobs import Job, JobError, JobQueue, JobQueueLike
from retouch.styles import PromptStyle, load_styles

__all__ = ["ServerState", "ModelInfo", "EngineLike"]


class EngineLike(Protocol):
    model: Any

    def run(self, job: Img2Img, on_step: Any = None, should_stop: Any = None, should_skip: Any = None) -> Result:
        ...


@dataclass(frozen=True)
class ModelInfo:
    """How A1111 names the loaded checkpoint (``/sdapi/v1/sd-models``, ``sd_model_checkpoint``)."""

    title: str
    model_name: str
    filename: str
    hash: str | None

    @classmethod
    def of(cls, bundle: Any) -> ModelInfo:
        name = str(getattr(bundle, "name", "model"))
        filename = str(getattr(bundle, "path", None) or name)
        short = getattr(bundle, "hash", None)
        base = Path(filename).name
        return cls(title=f"{base} [{short}]" if short else base, model_name=name, filename=filename, hash=short)

    @property
    def names(self) -> tuple[str, ...]:
        """Every spelling a client may use for this model, the title first."""
        return tuple(dict.fromkeys((self.title, self.model_name, Path(self.filename).name, self.filename)))


class ServerState:
    """Engine + queue + options + prompt styles of one server; ``start``/``stop`` bracket the worker
    thread. The styles file (``config.styles_file``) is read once, here.

    A front end without a local engine (``retouch.scale``'s ingress) passes ``engine=None`` with the
    ``models`` it serves (the first is the default) and its own ``queue`` and ``options``.
    """

    def __init__(
        self, engine: EngineLike | None, config: ServerConfig, *, models: tuple[ModelInfo, ...] = (),
        queue: JobQueueLike | None = None, options: OptionsStore | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.models = models or ((ModelInfo.of(engine.model),) if engine is not None else ())
        if not self.models:
            raise ValueError("ServerState needs an engine or the models it serves")
        self.model = self.models[0]
        names = tuple(n for m in self.models for n in m.names)
        titles = {n: m.title for m in reversed(self.models) for n in m.names}
        self.options = options or OptionsStore(self.model.title, names, titles)
        self.styles: Mapping[str, PromptStyle] = load_styles(config.styles_file) if config.styles_file else {}
        self.queue: JobQueueLike = queue or JobQueue(
            self.run_job, max_queue=config.max_queue, result_ttl_s=config.result_ttl_s,
            max_results=config.max_results,
        )

    def start(self) -> None:
        self.queue.start()

    def stop(self) -> None:
        self.queue.stop()

    # -- the worker's side ----------------------------------------------------------------------
    def run_job(self, job: Job) -> dict[str, Any]:
        """Run one queued :class:`Submission`; returns A1111's response body."""
        sub: Submission = job.payload
        deadline = None if self.config.max_job_seconds is None else time.monotonic() + self.config.max_job_seconds
        state = {"preview_step": 0, "timed_out": False}

        def should_stop() -> bool:
            if deadline is not None and time.monotonic() > deadline:
                state["timed_out"] = True
                return True
            return job.should_stop()

        def on_step(info: StepInfo) -> None:
            job.on_step(info.job_no, info.job_count, info.step, info.steps)
            self._maybe_preview(job, sub, info, state)

        assert self.engine is not None, "run_job needs a local engine"
        try:
            if sub.script is not None:
                hooks = Hooks(on_step=on_step, should_stop=should_stop, should_skip=job.should_skip)
                result = run_script(self.engine, sub.job, sub.script, hooks, return_grid=sub.return_grid)
            else:
                result = self.engine.run(sub.job, on_step=on_step, should_stop=should_stop,
                                         should_skip=job.should_skip)
        except ParamError as e:
            raise JobError(422, "ParamError", str(e)) from e
        if state["timed_out"]:
            result.comments.append(
                f"Stopped after this server's limit of {self.config.max_job_seconds} s per job; images are partial."
            )
        return build_response(sub, result, job.started or time.time())

    def _maybe_preview(self, job: Job, sub: Submission, info: StepInfo, state: dict[str, Any]) -> None:
        """Decode a preview when a client asked for one and ``preview_every`` steps have passed."""
        every = sub.preview_every
        if every <= 0 or not job.preview_wanted or info.denoised is None:
            return
        done = info.job_no * max(info.steps, 1) + info.step
        if done - state["preview_step"] < every:
            return
        preview = getattr(self.engine, "preview", None)
        if preview is None:
            return
        try:
            images = preview(info.denoised)
        except Exception:  # a preview must never break the job
            return
        state["preview_step"] = done
        job.preview = images[0] if images else None
        job.preview_wanted = False
