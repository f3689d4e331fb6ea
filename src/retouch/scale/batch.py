"""``retouch batch --ray``: the folder batch as a Ray Data pipeline, with the rules of ``retouch batch``.

The driver does what ``retouch batch`` does before and after the loop (:func:`prepare_batch`: inputs,
masks by stem, outputs that exist skipped so a rerun resumes, options checked once;
:func:`finish_batch`: the summary and exit code). In between, the pending inputs become a Ray
dataset mapped over an actor pool: each actor loads the engine once (only when an input proved
usable) and runs the same :meth:`BatchRun.process` as the local batch, which reads the image and
its mask, generates, and writes ``<stem>.png`` with its infotext (never over an existing file). Each
finished input comes back as a row; the driver prints its lines and adds it to the report. Inputs
are read once on the driver before Ray starts, so bad files are reported and skipped as locally,
and a rerun with nothing left to do (only done or bad inputs) writes nothing and starts no Ray.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from retouch.cli.batch import BatchReport, BatchRun, finish_batch, prepare_batch
from retouch.cli.jobs import Settings, load_engine
from retouch.cli.progress import Progress, StopFlag, catch_interrupt
from retouch.cli.run import ModelLoader, Session
from retouch.scale.cluster import ray_session

__all__ = ["RayBatchOptions", "run_batch_ray"]


@dataclass(frozen=True)
class RayBatchOptions:
    """Where and how wide: ``address`` of a cluster (None: a local one), engine actors and their
    resources."""

    address: str | None = None
    replicas: int = 1
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0


class BatchWorker:
    """One engine actor: runs :meth:`BatchRun.process` per input and returns what happened."""

    def __init__(self, loader: ModelLoader, settings: Settings, outdir: Path, masks: dict[Path, Path | None],
                 needs_mask: bool, count: int) -> None:
        self.session = Session(loader)
        self.parts = (settings, outdir, masks, needs_mask, count)

    def __call__(self, rows: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"path": [], "done": [], "images": [], "failed": [], "lines": []}
        for path in rows["path"]:
            lines = io.StringIO()
            progress = Progress(1, self.parts[4], out=lines, err=io.StringIO(), tty=False)
            run = BatchRun(*self.parts, BatchReport(), progress, StopFlag())
            run.process(partial(load_engine, self.session, self.parts[0], progress), Path(path))
            out["path"].append(path)
            out["done"].append(bool(run.report.done))
            out["images"].append(run.report.images)
            out["failed"].append(run.report.failed[0][1] if run.report.failed else "")
            out["lines"].append(lines.getvalue())
        return out


def _merge(batch: BatchRun, row: dict[str, Any]) -> None:
    path = Path(row["path"])
    for line in str(row["lines"]).splitlines():
        batch.progress.message(line)
    if row["failed"]:
        batch.report.failed.append((path, row["failed"]))
        batch.progress.message(f"skipped {path}: {row['failed']}", err=True)
    elif row["done"]:
        batch.report.done.append(path)
    batch.report.images += int(row["images"])
    finished = len(batch.report.done) + len(batch.report.failed)
    batch.progress.message(f"progress: {finished} input(s) finished", err=True)


def _usable(batch: BatchRun, path: Path) -> bool:
    """Read an input and its mask here first, so bad files are reported before Ray starts (and a
    rerun where only bad files are left starts nothing)."""
    from retouch.cli.errors import CliError

    try:
        batch.load(path)
    except CliError as exc:
        batch.report.failed.append((path, str(exc)))
        batch.progress.message(f"skipped {path}: {exc}", err=True)
        return False
    return True


def _pipeline(batch: BatchRun, pending: list[Path], loader: ModelLoader, opts: RayBatchOptions) -> Any:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    items = [{"path": str(p)} for p in pending]
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        BatchWorker, batch_size=1, concurrency=opts.replicas, num_cpus=opts.cpus_per_replica,
        num_gpus=opts.gpus_per_replica or None,
        fn_constructor_kwargs={
            "loader": loader, "settings": batch.settings, "outdir": batch.outdir, "masks": batch.masks,
            "needs_mask": batch.needs_mask, "count": batch.count,
        },
    )


def run_batch_ray(
    session: Session, settings: Settings, input_dir: Path, outdir: Path, mask_dir: Path | None,
    mask_file: Path | None, opts: RayBatchOptions,
) -> int:
    """``retouch batch --ray``: see the module docstring; returns the exit code of ``retouch batch``."""
    batch, pending = prepare_batch(settings, input_dir, outdir, mask_dir, mask_file)
    pending = [path for path in pending if _usable(batch, path)]
    if pending:
        notify = lambda text: batch.progress.message(text, err=True)  # noqa: E731
        with ray_session(opts.address), catch_interrupt(batch.stop, notify):
            for row in _pipeline(batch, pending, session.loader, opts).iter_rows():
                _merge(batch, row)
                if batch.stop():
                    break
    return finish_batch(batch)
