"""A1111's "Loopback" img2img script as a recipe over ``Engine.run`` (v1.10.1 ``scripts/loopback.py``).

Each of ``n_iter`` batches starts from the original init images and strength; each of ``loops`` runs
img2img with batch size 1 (the job's ``batch_size`` is ignored, as in A1111) and feeds its image to the
next loop. Loop ``i`` (0-based) runs at strength ``d0 + (final - d0) * curve(i / (loops - 1))`` with
``curve`` Linear ``p``, Aggressive ``sin(p * pi / 2)``, Lazy ``1 - cos(p * pi / 2)`` (``d0`` for one
loop). Seeds continue from one call to the next (the previous call's seed + 1, across batches too).
After the first loop, masked content becomes "original" (the mask still applies). A skip abandons the
current batch; an interrupt ends the job.

Output as A1111's with its default ``return_grid``: with one batch, every loop's image; with several,
each batch's last image; when there are two or more, a one-row grid of them comes first. Every
infotext is the first loop's, with ``Final denoising strength`` and ``Denoising curve``. Not supported:
appending an interrogated prompt (CLIP or DeepBooru need models that are not here). With colour
correction on, every loop is matched to the original first init image, unresized, as A1111's script
presets ``p.color_corrections`` (``Img2Img.color_correction_image``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from retouch.engine import Result
from retouch.imaging.tiles import image_row
from retouch.params import Img2Img, MaskedContent, ParamError
from retouch.recipes.common import Hooks, Runner, SkipWatch, Steps, with_script_params
from retouch.sampling.noise import resolve_seed

__all__ = ["Loopback", "CURVES", "loop_strengths", "run_loopback"]

CURVES = ("Aggressive", "Linear", "Lazy")
MAX_LOOPS = 32


@dataclass(frozen=True)
class Loopback:
    """The script's arguments; ``append_interrogation`` must be "None" here."""

    loops: int = 4
    final_denoising_strength: float = 0.5
    denoising_curve: str = "Linear"
    append_interrogation: str = "None"

    def __post_init__(self) -> None:
        if isinstance(self.loops, bool) or not isinstance(self.loops, int) or not 1 <= self.loops <= MAX_LOOPS:
            raise ParamError(f"loopback loops must be a whole number from 1 to {MAX_LOOPS}; got {self.loops!r}")
        d = self.final_denoising_strength
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0 <= d <= 1:
            raise ParamError(f"loopback final denoising strength must be a number from 0 to 1; got {d!r}")
        curve = next((c for c in CURVES if c.lower() == str(self.denoising_curve).lower()), None)
        if curve is None:
            raise ParamError(f"loopback denoising curve {self.denoising_curve!r} is not one of {', '.join(CURVES)}")
        object.__setattr__(self, "denoising_curve", curve)
        if self.append_interrogation != "None":
            raise ParamError(
                f"loopback append interrogation {self.append_interrogation!r} is not supported: CLIP and DeepBooru "
                "interrogation need models this server does not have; send \"None\""
            )

    @property
    def extras(self) -> dict[str, Any]:
        return {"Final denoising strength": self.final_denoising_strength, "Denoising curve": self.denoising_curve}


def _strength(args: Loopback, initial: float, loop: int) -> float:
    """A1111's ``calculate_denoising_strength(loop)``; also called with ``loop == loops`` after the last."""
    if args.loops == 1:
        return initial
    p = loop / (args.loops - 1)
    shape = {"Aggressive": math.sin(p * math.pi / 2), "Lazy": 1 - math.cos(p * math.pi / 2)}
    return initial + (args.final_denoising_strength - initial) * shape.get(args.denoising_curve, p)


def loop_strengths(args: Loopback, initial: float) -> list[float]:
    """The denoising strength of each loop, first to last."""
    return [initial] + [_strength(args, initial, i) for i in range(1, args.loops)]


@dataclass
class _Run:
    seed: int
    images: list[Image.Image]
    history: list[Image.Image]
    seeds: list[int]
    first: Result | None = None
    last: Result | None = None
    strength: float = 0.0


def _one_batch(engine: Runner, job: Img2Img, args: Loopback, run: _Run, n: int, hooks: Hooks,
               steps: Steps, skip: SkipWatch) -> None:
    init, fill, run.strength, last_image = list(job.init_images), job.inpainting_fill, job.denoising_strength, None
    for i in range(args.loops):
        loop_job = replace(job, init_images=init, seed=run.seed, n_iter=1, batch_size=1,
                           denoising_strength=run.strength, inpainting_fill=fill)
        result = engine.run(loop_job, steps.for_call(n * args.loops + i), hooks.should_stop, skip.start_call())
        if hooks.stopped():
            return
        run.first, run.last = run.first or result, result
        run.seed = result.seeds[0] + 1
        run.strength = _strength(args, job.denoising_strength, i + 1)
        if skip.fired:
            return
        last_image = result.images[0]
        init, fill = [last_image], MaskedContent.ORIGINAL
        if job.n_iter == 1:
            _keep(run, last_image, result.seeds[0])
    if job.n_iter > 1 and last_image is not None:
        _keep(run, last_image, run.seed - 1)


def _keep(run: _Run, image: Image.Image, seed: int) -> None:
    run.history.append(image)
    run.images.append(image)
    run.seeds.append(seed)


def run_loopback(engine: Runner, job: Img2Img, args: Loopback, hooks: Hooks | None = None,
                 return_grid: bool = True) -> Result:
    """Run the Loopback script on ``job`` (module docstring)."""
    hooks = hooks or Hooks()
    reference = job.init_images[0] if job.init_images else None
    job = replace(job, subseed=resolve_seed(job.subseed), color_correction_image=reference)
    run = _Run(seed=resolve_seed(job.seed), images=[], history=[], seeds=[])
    steps, skip = Steps(hooks.on_step, args.loops * job.n_iter), SkipWatch(hooks.should_skip)
    for n in range(job.n_iter):
        _one_batch(engine, job, args, run, n, hooks, steps, skip)
        if hooks.stopped():
            break
    if run.first is None or run.last is None:
        raise ParamError("loopback was interrupted before its first loop finished")
    grid = [image_row(run.history)] if len(run.history) > 1 and return_grid else []
    return _result(job, args, grid + run.images, run, hooks.stopped())


def _result(job: Img2Img, args: Loopback, images: list[Image.Image], run: _Run, interrupted: bool) -> Result:
    assert run.first is not None and run.last is not None
    info = with_script_params(run.first.infotexts[0], args.extras)
    first_seed = run.first.seeds[0]
    seeds = [first_seed] * (len(images) - len(run.seeds)) + run.seeds  # the grid takes the first seed
    result = Result(
        images=images, seeds=seeds,
        subseeds=[job.subseed] * len(images), prompts=[job.prompt] * len(images),
        negative_prompts=[job.negative_prompt] * len(images), infotexts=[info] * len(images),
        width=run.first.width, height=run.first.height, sampler_name=run.first.sampler_name,
        scheduler=run.first.scheduler, comments=list(run.first.comments), interrupted=interrupted,
        parameters=dict(run.first.parameters),
    )
    result.parameters["a1111_info"] = {
        "seed": first_seed, "all_seeds": list(run.last.seeds), "all_subseeds": list(run.last.subseeds),
        "all_prompts": list(run.last.prompts), "all_negative_prompts": list(run.last.negative_prompts),
        "denoising_strength": run.strength, "batch_size": 1, "n_iter": 1,
    }
    return result
