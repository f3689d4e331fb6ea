"""``retouch img2img`` and ``retouch inpaint``: inputs to jobs, jobs to numbered PNGs (issue #5).

Every input is read and checked, and every job built and planned (sampler names, sizes), before the
model loads, so bad input fails in a fraction of a second with one line naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from retouch.cli.errors import EXIT_INTERRUPTED, EXIT_OK, CliError
from retouch.cli.options import engine_options, job_fields, processing_size
from retouch.cli.outputs import save_numbered
from retouch.cli.progress import Progress, StopFlag, catch_interrupt
from retouch.cli.recall import model_mismatch, recall_fields
from retouch.cli.run import Session, check_job, generate
from retouch.cli.soft_options import soft_fields
from retouch.formats.images import DEFAULT_MAX_PIXELS, ImageDecodeError, open_image
from retouch.params import Img2Img, ParamError

if TYPE_CHECKING:
    from retouch.engine import Engine

__all__ = ["Settings", "settings_from", "read_image", "read_mask", "build_job", "load_engine", "run_inputs"]


@dataclass
class Settings:
    """One command's options, which of them were given explicitly, and the infotext's fields."""

    opts: dict[str, Any]
    explicit: set[str] = field(default_factory=set)
    recalled: dict[str, Any] = field(default_factory=dict)
    infotext: dict[str, object] | None = None


def settings_from(ctx: Any, opts: Mapping[str, Any]) -> Settings:
    """Note which options the user typed (they beat ``--from-infotext`` values) and read the infotext."""
    explicit = {name for name in opts if _given(ctx, name)}
    settings = Settings(dict(opts), explicit)
    source = opts.get("from_infotext")
    if source is not None:
        settings.recalled, settings.infotext = recall_fields(Path(source))
    return settings


def _given(ctx: Any, name: str) -> bool:
    """Whether option ``name`` came from the command line (or the environment), not its default.

    Compares the ParameterSource by name: Typer may run on click or on its own vendored copy.
    """
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def read_image(path: Path, what: str = "input") -> Image.Image:
    """Open an input image; a missing or unreadable file is a CliError naming it."""
    try:
        return open_image(path, max_pixels=DEFAULT_MAX_PIXELS)
    except ImageDecodeError as exc:
        raise CliError(f"{what}: {exc}") from None


def read_mask(path: Path, image: Image.Image, image_path: Path) -> Image.Image:
    """Open a mask and require the input's size (A1111 would stretch it silently)."""
    mask = read_image(path, "mask")
    if mask.size != image.size:
        raise CliError(
            f"mask {path} is {mask.width}x{mask.height} but image {image_path} is "
            f"{image.width}x{image.height}; the mask must have the image's size"
        )
    return mask


def build_job(settings: Settings, image: Image.Image, mask: Image.Image | None) -> Img2Img:
    """The Img2Img job for one input, planned once without a model to catch bad names early."""
    width, height = processing_size(settings.opts, settings.explicit, settings.recalled, image.size)
    fields = job_fields(settings.opts, settings.explicit, settings.recalled)
    try:
        fields["prompt"], fields["negative_prompt"] = _styled(settings.opts, fields)
        fields.update(soft_fields(settings.opts, settings.explicit, settings.recalled))
        job = Img2Img(init_images=[image], mask=mask, width=width, height=height, **fields)
        check_job(job)
    except ParamError as exc:
        raise CliError(str(exc)) from None
    return job


def _styled(opts: Mapping[str, Any], fields: Mapping[str, Any]) -> tuple[str, str]:
    """Prompt and negative prompt with ``--style`` names from ``--styles-file`` applied (A1111 styles)."""
    prompt, negative = str(fields.get("prompt", "")), str(fields.get("negative_prompt", ""))
    names = list(opts.get("style") or [])
    if not names:
        return prompt, negative
    if opts.get("styles_file") is None:
        raise CliError("--style needs --styles-file (an A1111 styles.csv) to look the names up")
    from retouch.styles import apply_styles, load_styles

    try:
        styles = load_styles(opts["styles_file"])
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return apply_styles(prompt, negative, names, styles)


def load_engine(session: Session, settings: Settings, progress: Progress) -> Engine:
    """The session's engine for ``--model``/``--vae``/``--device``/``--precision``/``--backend``; with
    ``--from-infotext``, a note when the infotext names another model."""
    opts = settings.opts
    precision = str(getattr(opts["precision"], "value", opts["precision"]))
    extra = engine_options(opts.get("vae_cache", 16), opts.get("max_memory"), bool(opts.get("fast")))
    named = settings.infotext.get("Preset") if settings.infotext is not None else None
    if named is not None:  # the preset and the precision it ran at, as the infotext names them
        if named != "fast":
            raise CliError(f"--from-infotext: unknown 'Preset: {named}' (known: fast)")
        extra["preset"] = "fast"
        if precision == "auto" and settings.infotext is not None:
            precision = str(settings.infotext.get("Precision", precision))
    from retouch.runtime import set_threads  # torch: imported only when a job runs

    try:
        set_threads(opts.get("threads"))
    except ParamError as exc:
        raise CliError(str(exc)) from None
    backend = str(getattr(opts.get("backend"), "value", opts.get("backend") or "torch"))
    engine = session.engine(opts["model"], opts.get("vae"), opts.get("device"), precision,
                            lora_dir=opts.get("lora_dir"), embeddings_dir=opts.get("embeddings_dir"),
                            backend=backend, **extra)
    if settings.infotext is not None:
        note = model_mismatch(settings.infotext, engine.model.name, engine.model.hash)
        if note:
            progress.message(note, err=True)
    return engine


def _report_comments(progress: Progress, comments: list[str], seen: set[str]) -> None:
    for comment in comments:
        if comment not in seen:
            seen.add(comment)
            progress.message(f"note: {comment}", err=True)


def run_inputs(
    session: Session, settings: Settings, inputs: list[Path], mask_path: Path | None, outdir: Path
) -> int:
    """Generate for every input (each with the same mask, if any); save ``NNNNN-SEED.png`` files."""
    jobs = []
    for path in inputs:
        image = read_image(path)
        mask = read_mask(mask_path, image, path) if mask_path is not None else None
        jobs.append(build_job(settings, image, mask))
    batch_size, n_iter = jobs[0].batch_size, jobs[0].n_iter
    progress = Progress(len(jobs) * n_iter, len(jobs) * n_iter * batch_size)
    engine = load_engine(session, settings, progress)
    stop, saved, discarded = StopFlag(), 0, 0
    seen: set[str] = set()
    with catch_interrupt(stop, lambda text: progress.message(text, err=True)):
        for job in jobs:
            if stop():
                break
            outcome = generate(engine, job, progress, stop)
            _report_comments(progress, outcome.comments, seen)
            for image, seed, text in zip(outcome.images, outcome.seeds, outcome.infotexts, strict=True):
                progress.message(f"saved {save_numbered(image, outdir, seed, text)}")
                saved += 1
            discarded += outcome.discarded
    progress.close()
    if stop():
        progress.message(
            f"interrupted: {saved} image(s) saved, {discarded} unfinished image(s) discarded", err=True
        )
        return EXIT_INTERRUPTED
    return EXIT_OK
