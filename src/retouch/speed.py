"""A job's speed options -> the denoiser's skip rule, cond/uncond padding and the UNet feature cache.

The engine calls these per batch; they read the job and the plan and build the pieces that
:class:`~retouch.sampling.denoisers.CFGDenoiser` and :meth:`~retouch.runtime.Runtime.unet_fn` take.
``speed_params`` gives the infotext keys as A1111 writes them: ``Skip Early CFG``, ``NGMS`` and
``NGMS all steps`` only when a call was skipped for that option, ``Pad conds`` / ``Pad conds v0``
when the last call was padded; plus the Retouch-only ``Feature cache interval``/``depth`` when on.
"""

from __future__ import annotations

from typing import Any

from retouch.feature_cache import FeatureCache
from retouch.params import Img2Img, ParamError
from retouch.plan import Plan
from retouch.prompting import schedule_steps
from retouch.runtime import Runtime
from retouch.sampling.denoisers import CFGDenoiser
from retouch.sampling.guidance import NGMS, SKIP_EARLY, CondPadding, UncondSkip

__all__ = ["uncond_skip", "cond_padding", "feature_cache", "speed_params", "check_backend_options"]


def uncond_skip(job: Img2Img, plan: Plan) -> UncondSkip | None:
    """A1111's rule with ``total_steps`` = sampler steps run, ×2 for second-order samplers."""
    if job.s_min_uncond == 0 and job.skip_early_cond == 0:
        return None
    return UncondSkip(
        s_min_uncond=job.s_min_uncond, all_steps=job.s_min_uncond_all, skip_early_cond=job.skip_early_cond,
        total_calls=schedule_steps(plan.steps_to_run, plan.sampler.second_order),
        on_timestep=plan.sampler.timestep_sampler,
    )


def cond_padding(job: Img2Img, runtime: Runtime) -> CondPadding | None:
    """``pad_cond_uncond_v0`` wins over ``pad_cond_uncond`` (A1111); "pad" needs the empty prompt encoded."""
    if job.pad_cond_uncond_v0:
        return CondPadding("v0")
    if not job.pad_cond_uncond:
        return None
    encoded = runtime.encode_texts([""], clip_skip=job.clip_skip, emphasis=job.emphasis)
    return CondPadding("pad", encoded.cond.context[:1].to(runtime.device))


def check_backend_options(job: Img2Img, runtime: Runtime) -> None:
    """Refuse, before any model runs, the options that need the torch UNet's internals on another backend."""
    if job.feature_cache_interval > 1 and runtime.backend != "torch":
        raise ParamError(f"feature_cache_interval: the feature cache runs the torch UNet block by block; it needs "
                         f"backend torch (this engine runs backend {runtime.backend}); set it to 0 or use backend torch")


def feature_cache(job: Img2Img, runtime: Runtime) -> FeatureCache | None:
    """A fresh cache for one sampling run, or None when ``feature_cache_interval`` is 0 or 1 (off)."""
    if job.feature_cache_interval <= 1:
        return None
    return FeatureCache(runtime.model.unet, job.feature_cache_interval, job.feature_cache_depth)


def speed_params(job: Img2Img, denoiser: CFGDenoiser) -> dict[str, Any]:
    """The infotext keys of the speed options that took effect in this batch (module docstring)."""
    out: dict[str, Any] = {}
    if denoiser.skipped.get(SKIP_EARLY):
        out["Skip Early CFG"] = job.skip_early_cond
    if denoiser.skipped.get(NGMS):
        out["NGMS"] = job.s_min_uncond
        if job.s_min_uncond_all:
            out["NGMS all steps"] = True
    if denoiser.padded and denoiser.padding is not None:
        out["Pad conds v0" if denoiser.padding.mode == "v0" else "Pad conds"] = True
    if job.feature_cache_interval > 1:
        out["Feature cache interval"] = job.feature_cache_interval
        out["Feature cache depth"] = job.feature_cache_depth
    return out
