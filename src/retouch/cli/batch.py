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

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from retouch.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliError
from retouch.cli.jobs import Settings, build_job, read_image, read_mask
from retouch.cli.options import job_fields
from retouch.cli.outputs import batch_names
from retouch.cli.progress import Progress, StopFlag, catch_interrupt
from retouch.cli.run import Session, generate
from retouch.formats.png import save_png

__all__ = ["list_files", "match_masks", "BatchReport", "run_batch"]


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


def _one(
    settings: Settings, path: Path, mask_path: Path | None, needs_mask: bool
) -> tuple[Image.Image, Image.Image | None]:
    if needs_mask and mask_path is None:
        raise CliError(f"no mask named {path.stem}.* in the mask folder")
    image = read_image(path)
    mask = read_mask(mask_path, image, path) if mask_path is not None else None
    return image, mask


def run_batch(
    session: Session,
    settings: Settings,
    input_dir: Path,
    outdir: Path,
    mask_dir: Path | None,
    mask_file: Path | None,
) -> int:
    """Process the folder; print one line per saved file or skipped input, then the summary."""
    inputs = list_files(input_dir, "INPUT_DIR")
    if outdir.exists() and outdir.resolve() == input_dir.resolve():
        raise CliError("the output folder must differ from the input folder")
    masks = match_masks(inputs, mask_dir, mask_file)
    fields = job_fields(settings.opts, settings.explicit, settings.recalled)
    count = int(fields["batch_size"]) * int(fields["n_iter"])
    build_job(settings, Image.new("RGB", (512, 512)), None)  # bad options fail once, before any file
    report = BatchReport()
    pending = _pending(inputs, outdir, count, report)
    progress = Progress(len(pending) * int(fields["n_iter"]), len(pending) * count)
    for path, reason in report.failed:
        progress.message(f"skipped {path}: {reason}", err=True)
    stop = StopFlag()
    if pending:
        opts = settings.opts
        engine = session.engine(
            opts["model"], opts.get("vae"), opts.get("device"), str(opts["precision"].value)
        )
        outdir.mkdir(parents=True, exist_ok=True)
        with catch_interrupt(stop, lambda text: progress.message(text, err=True)):
            for path in pending:
                if stop():
                    break
                try:
                    image, mask = _one(settings, path, masks[path], mask_dir is not None)
                    job = build_job(settings, image, mask)
                except CliError as exc:
                    report.failed.append((path, str(exc)))
                    progress.message(f"skipped {path}: {exc}", err=True)
                    continue
                outcome = generate(engine, job, progress, stop)
                for name, img, text in zip(
                    batch_names(path.stem, count), outcome.images, outcome.infotexts, strict=False
                ):
                    try:
                        saved = save_png(img, outdir / name, text, overwrite=False)
                    except FileExistsError:
                        continue
                    report.images += 1
                    progress.message(f"saved {saved}")
                if not outcome.interrupted:
                    report.done.append(path)
    progress.close()
    progress.message(report.summary(stop()))
    if stop():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if report.failed else EXIT_OK
