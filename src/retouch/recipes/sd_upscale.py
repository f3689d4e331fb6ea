"""A1111's "SD upscale" img2img script as a recipe over ``Engine.run`` (v1.10.1 ``scripts/sd_upscale.py``).

Order, as A1111 runs it: fix the seeds -> flatten the first init image on the background colour ->
upscale it by ``scale`` with the chosen built-in upscaler (none for "None") -> cut it into
``width x height`` tiles with ``overlap`` (:func:`~retouch.imaging.tiles.tile_grid`) -> for each of
``n_iter`` upscales, starting at seed ``seed + n``: run the tiles through img2img in batches of
``batch_size`` (the last batch may be short), the next batch starting at the previous batch's first seed
plus one -> blend the tiles back (:func:`~retouch.imaging.tiles.combine_tiles`); a tile that did not
run (interrupted) stays black, as A1111 leaves it.

Reported as A1111 does: one image per upscale; every image's infotext is the first tile's, with
``SD upscale overlap`` and ``SD upscale upscaler``; ``info`` gives the start seed as ``seed`` and the
last batch's seeds, subseeds and prompts as ``all_*``; width and height are the tile size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from retouch.engine import Result
from retouch.imaging.tiles import combine_tiles, split_tiles, tile_grid
from retouch.imaging.upscale import upscale_image, upscaler_name
from retouch.params import Img2Img, ParamError
from retouch.preprocess import flatten
from retouch.recipes.common import Hooks, Runner, SkipWatch, Steps, with_script_params
from retouch.sampling.noise import resolve_seed

__all__ = ["SDUpscale", "upscaled_size", "run_sd_upscale"]


@dataclass(frozen=True)
class SDUpscale:
    """The script's arguments: tile ``overlap`` in pixels, ``upscaler`` name, ``scale`` factor."""

    overlap: int = 64
    upscaler: str = "None"
    scale: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 0:
            raise ParamError(f"SD upscale overlap must be a whole number of pixels >= 0; got {self.overlap!r}")
        try:
            object.__setattr__(self, "upscaler", upscaler_name(self.upscaler))
        except ValueError as e:
            raise ParamError(f"SD upscale: {e}") from None
        if isinstance(self.scale, bool) or not isinstance(self.scale, int | float) or not self.scale > 0:
            raise ParamError(f"SD upscale scale factor must be a number above 0; got {self.scale!r}")

    @property
    def extras(self) -> dict[str, Any]:
        return {"SD upscale overlap": self.overlap, "SD upscale upscaler": self.upscaler}


def upscaled_size(size: tuple[int, int], args: SDUpscale) -> tuple[int, int]:
    """The size the tiles are cut from (A1111: ``int(w * scale // 8 * 8)``, unchanged for "None")."""
    if args.upscaler == "None":
        return size
    return int(size[0] * args.scale // 8 * 8), int(size[1] * args.scale // 8 * 8)


def check_sd_upscale(job: Img2Img, args: SDUpscale) -> None:
    """Refuse what the script cannot do, before any model runs (ParamError)."""
    if not job.init_images:
        raise ParamError("init_images must hold at least one image")
    if job.mask is not None:
        raise ParamError("SD upscale does not take a mask (A1111 would inpaint every tile with it); send mask=null")
    w, h = upscaled_size(job.init_images[0].size, args)
    try:
        tile_grid(w, h, job.width, job.height, args.overlap)
    except ValueError as e:
        raise ParamError(f"SD upscale: {e}") from None


def run_sd_upscale(engine: Runner, job: Img2Img, args: SDUpscale, hooks: Hooks | None = None) -> Result:
    """Run the SD upscale script on ``job`` (module docstring); ``job.width x job.height`` is the tile size."""
    hooks = hooks or Hooks()
    check_sd_upscale(job, args)
    seed, subseed = resolve_seed(job.seed), resolve_seed(job.subseed)
    source = flatten(job.init_images[0], job.img2img_background_color)
    image = upscale_image(source, args.scale, args.upscaler)
    grid = tile_grid(image.width, image.height, job.width, job.height, args.overlap)
    tiles = split_tiles(image, grid)
    size = job.batch_size
    batches = math.ceil(len(tiles) / size)
    steps, skip = Steps(hooks.on_step, batches * job.n_iter), SkipWatch(hooks.should_skip)
    first: Result | None = None
    last: Result | None = None
    combined: list[Image.Image] = []
    for n in range(job.n_iter):
        next_seed, done = seed + n, []
        for i in range(batches):
            if hooks.stopped():
                break
            part = tiles[i * size:(i + 1) * size]
            tile_job = replace(job, init_images=part, seed=next_seed, subseed=subseed, n_iter=1, batch_size=size,
                               mask=None)
            last = engine.run(tile_job, steps.for_call(n * batches + i), hooks.should_stop, skip.start_call())
            first = first or last
            next_seed = last.seeds[0] + 1 if last.seeds else next_seed + 1
            done += last.images[: len(part)]
        blank = Image.new("RGB", (job.width, job.height))
        combined.append(combine_tiles(grid, done + [blank] * (len(tiles) - len(done))))
        if hooks.stopped():
            break
    return _result(job, args, combined, first, last, seed, hooks.stopped())


def _result(job: Img2Img, args: SDUpscale, images: list[Image.Image], first: Result | None,
            last: Result | None, seed: int, interrupted: bool) -> Result:
    if first is None or last is None:
        raise ParamError("SD upscale was interrupted before its first tile ran")
    info = with_script_params(first.infotexts[0], args.extras) if first.infotexts else ""
    for image in images:
        image.info["parameters"] = info
    result = Result(
        images=images, seeds=[seed + n for n in range(len(images))], subseeds=list(last.subseeds[:1]) * len(images),
        prompts=[job.prompt] * len(images), negative_prompts=[job.negative_prompt] * len(images),
        infotexts=[info] * len(images), width=job.width, height=job.height, sampler_name=first.sampler_name,
        scheduler=first.scheduler, comments=list(first.comments), interrupted=interrupted or last.interrupted,
        parameters=dict(first.parameters),
    )
    result.parameters["a1111_info"] = {
        "seed": seed, "all_seeds": list(last.seeds), "all_subseeds": list(last.subseeds),
        "all_prompts": list(last.prompts), "all_negative_prompts": list(last.negative_prompts),
    }
    return result
