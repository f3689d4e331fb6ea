"""Running jobs for the CLI: the model loaded once per command, progress, Ctrl-C, and partial batches.

Interrupting (spec §5.6): the engine stops within one sampler step and returns the partial batch, as
A1111 does; like A1111 with its default ``save_incomplete_images = False``, the CLI discards that
partial batch and keeps only the batches that ran all their steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from retouch.cli.errors import CliError
from retouch.cli.progress import Progress, StopFlag
from retouch.params import Img2Img, ParamError

if TYPE_CHECKING:
    from retouch.engine import Engine, StepInfo
    from retouch.models.bundle import ModelBundle

__all__ = ["ModelLoader", "default_loader", "Session", "Outcome", "StepTracker", "generate", "check_job"]

#: ``(model, vae) -> ModelBundle``: how a command turns ``--model``/``--vae`` into a model.
ModelLoader = Callable[[str, "Path | None"], "ModelBundle"]


def default_loader(model: str, vae: Path | None) -> ModelBundle:
    """``retouch.load_model(model)``, with ``vae=`` only when an external VAE is given."""
    from retouch import load_model

    kwargs: dict[str, Any] = {} if vae is None else {"vae": vae}
    return load_model(model, **kwargs)


class Session:
    """What one command invocation shares: the model loader and the engine built on first use."""

    def __init__(self, loader: ModelLoader | None = None) -> None:
        self.loader = loader or default_loader
        self._engine: Engine | None = None
        self._key: tuple[Any, ...] | None = None

    def engine(
        self, model: str, vae: Path | None, device: str | None, precision: str, *,
        lora_dir: Path | None = None, embeddings_dir: Path | None = None, backend: str = "torch", **options: Any,
    ) -> Engine:
        """The engine for these settings, loading the model once; load failures become CliError.

        ``options``: further ``Engine`` keywords (``vae_cache_size``, ``max_memory``, ``preset``).
        """
        key = (model, vae, device, precision, lora_dir, embeddings_dir, backend, tuple(sorted(options.items())))
        if self._engine is None or self._key != key:
            from retouch.engine import Engine

            if vae is not None and not Path(vae).is_file():
                raise CliError(f"--vae: no such file: {vae}")
            try:
                bundle = self.loader(model, vae)
            except (OSError, ValueError, ImportError) as exc:
                raise CliError(f"cannot load model {model!r}: {exc}") from None
            try:
                self._engine = Engine(bundle, device=device, precision=precision, lora_dir=lora_dir,
                                      embeddings_dir=embeddings_dir, backend=backend, **options)
            except (OSError, ValueError, RuntimeError) as exc:  # ParamError, a missing networks folder
                raise CliError(str(exc)) from None
            self._key = key
        return self._engine


def check_job(job: Img2Img) -> None:
    """Resolve sampler, scheduler, sizes and seeds without a model (ParamError names the problem)."""
    from retouch.plan import make_plan

    make_plan(job)


@dataclass
class Outcome:
    """The images of the batches that finished, with their seeds and infotexts."""

    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    interrupted: bool = False
    discarded: int = 0


class StepTracker:
    """Turns the engine's StepInfo stream into batch starts/ends for the progress display."""

    def __init__(self, progress: Progress, batch_size: int) -> None:
        self.progress = progress
        self.batch_size = batch_size
        self.job_no = -1
        self.complete = 0
        self.in_batch = False

    def __call__(self, info: StepInfo) -> None:
        if info.job_no != self.job_no:
            self.job_no = info.job_no
            self.in_batch = True
            self.progress.start_batch(self.batch_size)
        self.progress.step(info.step, info.steps)
        if info.step >= info.steps and self.in_batch:
            self.in_batch = False
            self.complete += 1
            self.progress.finish_batch(self.batch_size)


def generate(engine: Engine, job: Img2Img, progress: Progress, stop: StopFlag) -> Outcome:
    """Run ``job``; on interrupt keep only the fully sampled batches (the rest is discarded)."""
    tracker = StepTracker(progress, job.batch_size)
    try:
        result = engine.run(job, on_step=tracker, should_stop=stop)
    except ParamError as exc:
        raise CliError(str(exc)) from None
    keep = len(result.images)
    if result.interrupted:
        keep = min(keep, tracker.complete * job.batch_size)
    return Outcome(
        images=list(result.images[:keep]),
        seeds=list(result.seeds[:keep]),
        infotexts=list(result.infotexts[:keep]),
        comments=list(result.comments),
        interrupted=result.interrupted,
        discarded=len(result.images) - keep,
    )
