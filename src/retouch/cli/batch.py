"""``retouch batch``: every file of a folder, with A1111's batch rules and resumable output.

Rules (A1111's img2img batch tab):

* every regular, non-hidden file of INPUT_DIR is an input, in name order; one that is not a usable
  image is reported and skipped;
* masks: ``--mask FILE`` is used for every input; with ``--mask-dir``, a folder holding exactly one file
  gives that mask to every input, otherwise an input's mask is the file with the same stem
  (``cat.png`` <- ``masks/cat.*``); an input without one is reported and skipped;
* outputs are named after the input: ``<stem>.png``, or ``<stem>-1.png`` ... ``<stem>-<n>.png`` when
  an input gives several images (batch size x batch count).

An input whose outputs all exist is skipped, so re-running an interrupted batch resumes it (and a
finished batch writes nothing and loads no model). A summary line ends the run; the exit code is
0 when nothing failed, 1 when some inputs failed, 130 after Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from retouch.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliError
from retouch.cli.jobs import Settings, build_job, load_engine, read_image, read_mask
from retouch.cli.options import job_fields
from retouch.cli.outputs import batch_names
from retouch.cli.progress import Progress, StopFlag, catch_interrupt
from retouch.cli.run import Session, generate
from retouch.formats.png import save_png
from retouch.params import Img2Img

if TYPE_CHECKING:
    from retouch.engine import Engine

__all__ = ["list_files", "match_masks", "BatchReport", "BatchRun", "prepare_batch", "finish_batch", "run_batch"]


def list_files(folder: Path, what: str) -> list[Path]:
    """Regular, non-hidden files of ``folder`` in name order; CliError when it is not a folder."""
    if not folder.is_dir():
        raise CliError(f"{what}: no such folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def match_masks(inputs: list[Path], mask_dir: Path | None, mask_file: Path | None) -> dict[Path, Path | None]:
    """Each input's mask by A1111's rules (see the module docstring); None: no mask found."""
    if mask_file is not None:
        if not mask_file.is_file():
            raise CliError(f"--mask: no such file: {mask_file}")
        return dict.fromkeys(inputs, mask_file)
    if mask_dir is None:
        return dict.fromkeys(inputs)
    masks = list_files(mask_dir, "--mask-dir")
    if len(masks) == 1:
        return dict.fromkeys(inputs, masks[0])
    by_stem: dict[str, Path] = {}
    for mask in masks:
        by_stem.setdefault(mask.stem, mask)
    return {path: by_stem.get(path.stem) for path in inputs}


@dataclass
class BatchReport:
    """Counts for the summary line."""

    done: list[Path] = field(default_factory=list)
    already: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    images: int = 0

    def summary(self, interrupted: bool) -> str:
        text = (
            f"batch: {len(self.done)} done ({self.images} image(s) written), "
            f"{len(self.already)} already done, {len(self.failed)} failed"
        )
        return text + (", interrupted" if interrupted else "")


def _pending(inputs: list[Path], outdir: Path, count: int, report: BatchReport) -> list[Path]:
    """Inputs with at least one missing output; duplicate stems are failures (they'd share names)."""
    stems: dict[str, Path] = {}
    pending = []
    for path in inputs:
        if path.stem in stems:
            report.failed.append((path, f"same output name as {stems[path.stem].name}"))
            continue
        stems[path.stem] = path
        if all((outdir / name).exists() for name in batch_names(path.stem, count)):
            report.already.append(path)
        else:
            pending.append(path)
    return pending


@dataclass
class BatchRun:
    """One batch run's fixed parts: where things go and how many images each input gives."""

    settings: Settings
    outdir: Path
    masks: dict[Path, Path | None]
    needs_mask: bool
    count: int
    report: BatchReport
    progress: Progress
    stop: StopFlag

    def load(self, path: Path) -> Img2Img:
        """The job for one input; CliError for a missing mask or an unusable image or mask."""
        image = read_image(path)
        mask_path = self.masks[path]
        if self.needs_mask and mask_path is None:
            raise CliError(f"no mask named {path.stem}.* in the mask folder")
        mask = read_mask(mask_path, image, path) if mask_path is not None else None
        return build_job(self.settings, image, mask)

    def process(self, engine: Callable[[], Engine], path: Path) -> None:
        """Generate for one input and write its missing outputs; a bad input is reported, not fatal.

        ``engine`` is called only once an input proved usable, so a run where every remaining input
        is bad never loads the model."""
        try:
            job = self.load(path)
        except CliError as exc:
            self.report.failed.append((path, str(exc)))
            self.progress.message(f"skipped {path}: {exc}", err=True)
            return
        outcome = generate(engine(), job, self.progress, self.stop)
        names = batch_names(path.stem, self.count)
        for name, image, text in zip(names, outcome.images, outcome.infotexts, strict=False):
            self.outdir.mkdir(parents=True, exist_ok=True)
            try:
                saved = save_png(image, self.outdir / name, text, overwrite=False)
            except FileExistsError:  # written by an earlier, interrupted run
                continue
            self.report.images += 1
            self.progress.message(f"saved {saved}")
        if not outcome.interrupted:
            self.report.done.append(path)


def prepare_batch(
    settings: Settings, input_dir: Path, outdir: Path, mask_dir: Path | None, mask_file: Path | None
) -> tuple[BatchRun, list[Path]]:
    """Check the options and folders, match masks, and find the inputs still to do (reported)."""
    inputs = list_files(input_dir, "INPUT_DIR")
    if outdir.exists() and outdir.resolve() == input_dir.resolve():
        raise CliError("the output folder must differ from the input folder")
    masks = match_masks(inputs, mask_dir, mask_file)
    fields = job_fields(settings.opts, settings.explicit, settings.recalled)
    n_iter, count = int(fields["n_iter"]), int(fields["batch_size"]) * int(fields["n_iter"])
    build_job(settings, Image.new("RGB", (512, 512)), None)  # bad options fail once, before any file
    report = BatchReport()
    pending = _pending(inputs, outdir, count, report)
    progress = Progress(len(pending) * n_iter, len(pending) * count)
    for path, reason in report.failed:
        progress.message(f"skipped {path}: {reason}", err=True)
    return BatchRun(settings, outdir, masks, mask_dir is not None, count, report, progress, StopFlag()), pending


def finish_batch(batch: BatchRun) -> int:
    """Print the summary line; the exit code (0, 1 when some inputs failed, 130 after Ctrl-C)."""
    batch.progress.close()
    batch.progress.message(batch.report.summary(batch.stop()))
    if batch.stop():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if batch.report.failed else EXIT_OK


def run_batch(
    session: Session,
    settings: Settings,
    input_dir: Path,
    outdir: Path,
    mask_dir: Path | None,
    mask_file: Path | None,
) -> int:
    """Process the folder; print one line per saved file or skipped input, then the summary."""
    batch, pending = prepare_batch(settings, input_dir, outdir, mask_dir, mask_file)
    loaded: list[Engine] = []

    def engine() -> Engine:
        if not loaded:
            loaded.append(load_engine(session, settings, batch.progress))
        return loaded[0]

    with catch_interrupt(batch.stop, lambda text: batch.progress.message(text, err=True)):
        for path in pending:
            if batch.stop():
                break
            batch.process(engine, path)
    return finish_batch(batch)
