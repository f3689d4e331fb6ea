"""Per-step mask blends: one strategy object per way of mixing the x0 estimate with the init latent.

:class:`~retouch.sampling.denoisers.CFGDenoiser` calls ``blend.step(denoised, sigma, call)`` after the
guidance combine, and the engine calls ``blend.final(samples)`` once after sampling (A1111's
``apply_blend`` per step and the blend in ``StableDiffusionProcessingImg2Img.sample``). Strategies
(spec soft-masks.md §5.1):

* :class:`LinearBlend`: A1111's ``x0 * nmask + init * (1 - nmask)``, per step and final.
* :class:`SoftInpaintBlend`: A1111's soft inpainting (§1.4): weight ``nmask ** (sigma ** power * scale)``,
  magnitude-preserving interpolation; no final blend (§1.5).
* :class:`DifferentialBlend`: differential diffusion (§2): a pixel with mask ``d`` is pinned to the
  init latent until the per-call threshold falls to ``d`` (ComfyUI, the paper's code or InvokeAI's
  time reference), ``d == 0`` never released (fixes ComfyUI's last-step release, G7).

σ semantics (G6): every Retouch sampler calls the denoiser with a k-diffusion σ (VE noise level of the
model table), so ``sigma`` here is never a timestep:

* Euler, Euler a, LMS, DPM++ 2M, DPM++ 2M SDE, DPM++ 3M SDE, DPM fast, DDIM (σ-space): one call per
  step, at the tail's σ_k;
* Heun, DPM2, DPM2 a, DPM++ 2S a, DPM++ SDE, Restart, DPM adaptive: also at intermediate σ (σ_{k+1},
  midpoints, restart re-noising); each call gets its own soft weight, and with step thresholds
  (differential diffusion) the step whose σ interval it lies in.

A1111 passes timesteps (1..999) to ``on_mask_blend`` for its timestep samplers (DDIM, PLMS, UniPC),
which makes soft inpainting pin partially masked pixels to the original for nearly the whole run
(§1.4, C4); Retouch deliberately uses σ for every sampler. :func:`soft_weight` takes whatever it is
given, so A1111's timestep path can still be computed (tests, C4).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from retouch.params import DifferentialDiffusion, SoftInpainting

__all__ = [
    "MaskBlend",
    "LinearBlend",
    "SoftInpaintBlend",
    "DifferentialBlend",
    "soft_weight",
    "magnitude_blend",
    "timestep_index",
    "dd_threshold",
    "dd_mask",
]


class MaskBlend(Protocol):
    """How the x0 estimate meets the clean init latent where a mask exists."""

    def step(self, denoised: Tensor, sigma: Tensor, call: int) -> Tensor:
        """The blended x0 for denoiser call ``call`` (0-based) at noise level ``sigma`` (B,)."""
        ...

    def final(self, samples: Tensor) -> Tensor:
        """The latent after the sampler returns, before decoding."""
        ...


class LinearBlend:
    """A1111's default: ``x * nmask + init * (1 - nmask)`` every step and once after sampling (spec §2.9)."""

    def __init__(self, init_latent: Tensor, nmask: Tensor) -> None:
        self.init_latent = init_latent
        self.nmask = nmask

    def step(self, denoised: Tensor, sigma: Tensor, call: int) -> Tensor:
        return denoised * self.nmask + self.init_latent * (1.0 - self.nmask)

    def final(self, samples: Tensor) -> Tensor:
        return self.step(samples, torch.zeros(()), -1)


def soft_weight(nmask: Tensor, sigma: float | Tensor, power: float, scale: float) -> Tensor:
    """A1111 ``get_modified_nmask``: ``nmask ** (sigma ** power * scale)`` (spec §1.4 step 1, C1-C4).

    ``pow(0, 0) = 1``, so ``scale == 0`` gives weight 1 everywhere, as in A1111.
    """
    exponent = torch.as_tensor(sigma, dtype=nmask.dtype) ** power * scale
    return torch.pow(nmask, exponent)


def magnitude_blend(a: Tensor, b: Tensor, t: Tensor, p: float) -> Tensor:
    """A1111 soft inpainting's ``latent_blend`` (spec §1.4 step 2, C5, C23), shapes (B, C, h, w).

    Direction from the linear blend ``v = a (1 - t) + b t``; length from the p-power mean of the two
    lengths over the channel axis, ``(|a|^p (1 - t0) + |b|^p t0)^(1/p)`` with ``t0 = t[:, :1]``,
    divided by ``|v| + 1e-5`` (so t = 0 returns ``a * |a| / (|a| + 1e-5)``, not ``a``). Norms and the
    scale are float64, the result has ``v``'s dtype.
    """
    v = a * (1 - t) + b * t
    t0 = t[:, :1].to(torch.float64)
    current = torch.linalg.vector_norm(v, dim=1, keepdim=True).to(torch.float64) + 1e-5
    na = torch.linalg.vector_norm(a, dim=1, keepdim=True).to(torch.float64) ** p
    nb = torch.linalg.vector_norm(b, dim=1, keepdim=True).to(torch.float64) ** p
    desired = (na * (1 - t0) + nb * t0) ** (1.0 / p)
    return v * (desired / current).to(v.dtype)


class SoftInpaintBlend:
    """A1111 soft inpainting's per-step blend (spec §1.4) and its skipped final blend (§1.5).

    ``sigma[0]`` is used for the whole batch (A1111: "both values are the same").
    """

    def __init__(self, init_latent: Tensor, nmask: Tensor, settings: SoftInpainting) -> None:
        self.init_latent = init_latent
        self.nmask = nmask
        self.settings = settings

    def step(self, denoised: Tensor, sigma: Tensor, call: int) -> Tensor:
        s = self.settings
        t = soft_weight(self.nmask, sigma.reshape(-1)[0], s.mask_blend_power, s.mask_blend_scale)
        return magnitude_blend(self.init_latent, denoised, t, s.inpaint_detail_preservation)

    def final(self, samples: Tensor) -> Tensor:
        return samples


def timestep_index(sigma: Tensor, model_sigmas: Tensor) -> Tensor:
    """Nearest integer timestep by log-σ distance (ComfyUI ``ModelSamplingDiscrete.timestep``)."""
    dist = (torch.log(sigma.reshape(-1, 1).to(model_sigmas.dtype)) - torch.log(model_sigmas)[None]).abs()
    return dist.argmin(dim=1)


def dd_threshold(sigma: float, tail: Tensor, model_sigmas: Tensor, schedule_start: int,
                 schedule_steps: int, options: DifferentialDiffusion) -> float:
    """The per-call release threshold in [0, 1] (spec §2.3-§2.4, §5.1; C9-C11, C14).

    ``tail``: the σ run (ends with 0); ``schedule_start``: index of ``tail[0]`` in the full schedule of
    ``schedule_steps`` steps. timestep/relative (ComfyUI): ``(ts(σ) - ts(σ_to)) / (ts(σ_from) - ts(σ_to))``
    with σ_from = tail[0], σ_to = σ_min (or tail[-1] when above it); timestep/absolute
    (InvokeAI): ``ts(σ) / 1000``; step/relative (paper): ``1 - k/K`` for step k of K; step/absolute:
    ``1 - (start + k)/N`` over the full schedule. k = the number of tail σ above this σ (intermediate
    evaluations of 2nd-order samplers take the step they fall in).
    """
    if options.thresholds == "step":
        k = int((tail[:-1] > sigma * (1 + 1e-6)).sum())
        if options.reference == "relative":
            return 1.0 - k / max(len(tail) - 1, 1)
        return 1.0 - (schedule_start + k) / schedule_steps
    ts = int(timestep_index(torch.tensor([sigma]), model_sigmas)[0])
    if options.reference == "absolute":
        return ts / 1000.0
    sigma_min = float(model_sigmas.min())
    sigma_to = float(tail[-1]) if float(tail[-1]) > sigma_min else sigma_min
    ts_from = int(timestep_index(tail[:1], model_sigmas)[0])
    ts_to = int(timestep_index(torch.tensor([sigma_to]), model_sigmas)[0])
    if ts_from == ts_to:
        return 0.0
    return (ts - ts_to) / (ts_from - ts_to)


def dd_mask(d: Tensor, threshold: float, options: DifferentialDiffusion) -> Tensor:
    """The per-call generate weight from the change mask ``d`` (1 = change) and a threshold (§5.1, C12-C15).

    Gate ``b = d >= thr`` (timestep/absolute: InvokeAI's strict ``keep < 1 - t/1000``, i.e. ``d > thr``), always with ``d > 0``
    (mask-0 pixels are never released, unlike ComfyUI at σ_min, G7); then ``s*b + (1 - s)*d`` for
    strength s (s = 0 is the plain soft mask; ComfyUI treats 0 like 1).
    """
    if options.reference == "absolute" and options.thresholds == "timestep":
        gate = d > threshold
    else:
        gate = d >= threshold
    b = (gate & (d > 0)).to(d.dtype)
    s = options.strength
    return b if s == 1.0 else s * b + (1 - s) * d


class DifferentialBlend:
    """Differential diffusion as an x0 blend: ``x0 * m + init * (1 - m)`` with ``m = dd_mask(d, thr(σ))``.

    The final blend keeps the init latent exactly where ``d == 0`` and the samples elsewhere. The sampler's
    own ``x`` is never replaced (ComfyUI also swaps the model input for ``init + σ ε``): pinning x0 keeps
    frozen pixels on ``init + σ · noise`` for every Retouch sampler, as A1111's ordinary inpainting does.
    """

    def __init__(self, init_latent: Tensor, d: Tensor, options: DifferentialDiffusion, tail: Tensor,
                 model_sigmas: Tensor, schedule_start: int, schedule_steps: int) -> None:
        self.init_latent = init_latent
        self.d = d
        self.options = options
        self.tail = tail.detach().to("cpu", torch.float64)
        self.model_sigmas = model_sigmas.detach().to("cpu", torch.float64)
        self.schedule_start = schedule_start
        self.schedule_steps = schedule_steps
        self.thresholds: list[float] = []

    def weight(self, sigma: float) -> Tensor:
        thr = dd_threshold(sigma, self.tail, self.model_sigmas, self.schedule_start, self.schedule_steps,
                           self.options)
        self.thresholds.append(thr)
        return dd_mask(self.d, thr, self.options)

    def step(self, denoised: Tensor, sigma: Tensor, call: int) -> Tensor:
        m = self.weight(float(sigma.reshape(-1)[0]))
        return denoised * m + self.init_latent * (1.0 - m)

    def final(self, samples: Tensor) -> Tensor:
        return torch.where(self.d == 0, self.init_latent, samples)
