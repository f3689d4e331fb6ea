"""``retouch upscale`` and ``retouch loopback``: A1111's SD upscale and Loopback scripts from the terminal.

Both build the job as ``retouch img2img`` does (same options), check the script's arguments and the
tile grid before the model loads, run the recipe from :mod:`retouch.recipes` with progress over all its
engine calls, and save ``NNNNN-SEED.png`` files with A1111's infotext. ``upscale`` uses ``--size`` as
the tile size (default 512x512, A1111's width and height); an interrupted run saves nothing.
"""

from __future__ import annotations

from pathlib import Path

from retouch.cli.errors import EXIT_INTERRUPTED, EXIT_OK, CliError
from retouch.cli.jobs import Settings, build_job, load_engine, read_image, read_mask
from retouch.cli.outputs import save_numbered
from retouch.cli.progress import Progress, StopFlag, catch_interrupt
from retouch.cli.run import Session, StepTracker
from retouch.params import ParamError
from retouch.recipes import Hooks, Loopback, ScriptCall, check_script, run_script, script_job_count

__all__ = ["run_script_command", "DEFAULT_TILE"]

#: A1111's default width and height, the tile size of SD upscale.
DEFAULT_TILE = "512x512"


def run_script_command(
    session: Session, settings: Settings, input: Path, mask_path: Path | None, outdir: Path, call: ScriptCall
) -> int:
    """Run one script on one input image; returns the exit code."""
    image = read_image(input)
    mask = read_mask(mask_path, image, input) if mask_path is not None else None
    job = build_job(settings, image, mask)
    try:
        check_script(job, call)
        count = script_job_count(job, call)
    except ParamError as exc:
        raise CliError(str(exc)) from None
    per_call = 1 if isinstance(call.args, Loopback) else job.batch_size
    progress = Progress(count, count * per_call)
    engine = load_engine(session, settings, progress)
    stop = StopFlag()
    with catch_interrupt(stop, lambda text: progress.message(text, err=True)):
        try:
            result = run_script(engine, job, call, Hooks(on_step=StepTracker(progress, per_call), should_stop=stop))
        except ParamError as exc:
            raise CliError(str(exc)) from None
    progress.close()
    if stop() or result.interrupted:
        progress.message(f"interrupted: {call.title} saved nothing", err=True)
        return EXIT_INTERRUPTED
    for comment in dict.fromkeys(result.comments):
        progress.message(f"note: {comment}", err=True)
    for picture, seed, text in zip(result.images, result.seeds, result.infotexts, strict=True):
        progress.message(f"saved {save_numbered(picture, outdir, seed, text)}")
    return EXIT_OK
