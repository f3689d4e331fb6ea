"""Derived, immutable per-request values computed before any model runs.

``make_plan`` resolves everything that can fail cheaply (sampler and scheduler names, sizes, the image
to batch rules, seeds, the step schedule), so a bad job is refused before a VAE or UNet is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from retouch.params import Img2Img, ParamError
from retouch.preprocess import check_image_inputs
from retouch.sampling.noise import batch_seeds, resolve_seed
from retouch.sampling.registry import (
    SamplerSpec,
    check_schedule,
    get_sampler,
    get_scheduler,
    resolved_scheduler_label,
    split_sampler_name,
)
from retouch.sampling.schedules import img2img_steps

__all__ = ["Plan", "make_plan"]


@dataclass(frozen=True)
class Plan:
    """What one job will do.

    ``width``/``height`` are the processing size floored to multiples of 8 (what A1111's VAE output
    is); ``batch_size`` is after the image-to-batch rule (spec §2.14). ``schedule_length`` (N) and
    ``t_enc`` follow spec §3.1: ``t_enc + 1`` sampler steps run. ``seeds``/``subseeds`` hold one
    entry per output image (spec §2.16).
    """

    width: int
    height: int
    batch_size: int
    n_iter: int
    seeds: tuple[int, ...]
    subseeds: tuple[int, ...]
    sampler: SamplerSpec
    scheduler: str
    schedule_label: str
    schedule_length: int
    t_enc: int
    comments: tuple[str, ...]

    @property
    def steps_to_run(self) -> int:
        return self.t_enc + 1

    @property
    def latent_size(self) -> tuple[int, int]:
        """(latent height, latent width)."""
        return self.height // 8, self.width // 8


def _batch_size(job: Img2Img) -> int:
    """A1111's image-to-batch rule (spec §2.14)."""
    n = len(job.init_images)
    if n == 0:
        raise ParamError("init_images must hold at least one image")
    if n > job.batch_size:
        raise ParamError(
            f"{n} init images were given but batch_size is {job.batch_size}; "
            "pass at most batch_size images (one image is repeated over the batch)"
        )
    return job.batch_size if n == 1 else n


def make_plan(job: Img2Img) -> Plan:
    """Resolve names, sizes, batch, seeds and the step schedule of ``job`` (no model needed)."""
    name, suffix = split_sampler_name(job.sampler_name)
    sampler = get_sampler(name)
    scheduler = get_scheduler(suffix if suffix is not None and job.scheduler == "Automatic" else job.scheduler)
    check_schedule(sampler, scheduler)
    comments: list[str] = []
    width, height = job.width - job.width % 8, job.height - job.height % 8
    if (width, height) != (job.width, job.height):
        comments.append(
            f"Size {job.width}x{job.height} is not a multiple of 8; the output is {width}x{height}, "
            "as A1111's decoded output is."
        )
    batch = _batch_size(job)
    check_image_inputs(job)
    seed, subseed = resolve_seed(job.seed), resolve_seed(job.subseed)
    seeds, subseeds = batch_seeds(seed, subseed, job.subseed_strength, batch * job.n_iter)
    n, t_enc = img2img_steps(job.steps, job.denoising_strength, job.img2img_fix_steps)
    if n == 0:
        raise ParamError(
            "denoising_strength 0 with img2img_fix_steps gives an empty schedule; use a strength above 0"
        )
    return Plan(
        width=width, height=height, batch_size=batch, n_iter=job.n_iter, seeds=tuple(seeds),
        subseeds=tuple(subseeds), sampler=sampler, scheduler=scheduler,
        schedule_label=resolved_scheduler_label(sampler, scheduler), schedule_length=n, t_enc=t_enc,
        comments=tuple(comments),
    )
