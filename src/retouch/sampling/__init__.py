"""Sampling: sigma schedules, samplers, seeded noise and A1111's names for them (spec §2.16, §3).

Pure functions over torch tensors; nothing here knows models, files or devices. ``denoisers`` (model
scaling, CFG, mask blend) and ``latents`` live beside these modules and are imported from there.
"""

from retouch.sampling.noise import ImageNoise, batch_seeds, resolve_seed, slerp
from retouch.sampling.registry import (
    SAMPLERS,
    SCHEDULERS,
    SamplerSpec,
    build_sigmas,
    get_sampler,
    get_scheduler,
    resolved_scheduler_label,
    split_sampler_name,
)
from retouch.sampling.samplers import Denoiser, NoiseFn, SamplerStep, StepCallback
from retouch.sampling.schedules import (
    img2img_steps,
    model_sigmas,
    scaled_linear_alphas_cumprod,
    sigma_tail,
    sigma_to_t,
    t_to_sigma,
)

__all__ = [
    "ImageNoise",
    "batch_seeds",
    "resolve_seed",
    "slerp",
    "SAMPLERS",
    "SCHEDULERS",
    "SamplerSpec",
    "build_sigmas",
    "get_sampler",
    "get_scheduler",
    "resolved_scheduler_label",
    "split_sampler_name",
    "Denoiser",
    "NoiseFn",
    "SamplerStep",
    "StepCallback",
    "img2img_steps",
    "model_sigmas",
    "scaled_linear_alphas_cumprod",
    "sigma_tail",
    "sigma_to_t",
    "t_to_sigma",
]
