"""A1111's "LCM" sampler: the latent-consistency step, its 50-step timestep grid and boundary scalings.

Facts from A1111 v1.10 ``modules/sd_samplers_lcm.py`` (its own model wrapper around k-diffusion's
DiscreteEpsDDPMDenoiser), written here from their description:

* The model is seen through 50 "original" timesteps, ``skip = 1000 // 50 = 20`` apart: grid entry ``k``
  is the model's timestep ``20 k + 19`` (19, 39, ..., 999), so its sigmas are ``model_sigmas[19::20]``.
* A sigma maps to a timestep by the nearest grid entry in log sigma (no interpolation):
  ``t = 20 argmin|log sigma - log grid| + 19``; the UNet is called at that integer timestep.
* The output is the eps-model's x0 passed through the consistency boundary condition with
  ``sigma_data = 0.5`` and the timestep scaled by 10: ``x0' = c_out x0 + c_skip x`` with
  ``c_skip = 0.25 / ((10 t)^2 + 0.25)``, ``c_out = 10 t / sqrt((10 t)^2 + 0.25)``.
* "Automatic" schedule: ``t = linspace(999, 19, n)`` mapped to fractional grid indices
  ``clamp((t - 19) / 20, 0, 49)``, log-sigma interpolated on the grid, then 0.
  Range-based schedule types (Karras, Exponential, Polyexponential, ...) use the grid's sigma range.
* The step: ``x = x0'`` and, unless the next sigma is 0, ``x += sigma_next * noise`` (one draw per step
  from the image's stream). A1111 lists it with no ``uses_ensd`` option.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retouch.sampling.samplers import INF, Denoiser, NoiseFn, StepCallback, _denoise, _report, _steps

__all__ = ["LCM_ORIGINAL_STEPS", "lcm_grid", "lcm_timestep", "sigmas_lcm", "lcm_boundary", "sample_lcm"]

LCM_ORIGINAL_STEPS = 50
_SIGMA_DATA = 0.5
_TIMESTEP_SCALING = 10.0


def _skip(model_sigmas: Tensor) -> int:
    return model_sigmas.shape[0] // LCM_ORIGINAL_STEPS


def lcm_grid(model_sigmas: Tensor) -> Tensor:
    """The 50 ascending sigmas LCM sees: the model's timesteps 19, 39, ..., 999 (for T = 1000)."""
    skip = _skip(model_sigmas)
    return model_sigmas[skip - 1 :: skip][:LCM_ORIGINAL_STEPS]


def lcm_timestep(sigma: Tensor, model_sigmas: Tensor) -> Tensor:
    """The integer timestep (as float32, shaped like ``sigma``) of the grid entry nearest in log sigma."""
    skip = _skip(model_sigmas)
    log_grid = lcm_grid(model_sigmas).to(device=sigma.device, dtype=torch.float32).log()
    dists = sigma.to(torch.float32).log().reshape(1, -1) - log_grid[:, None]
    index = dists.abs().argmin(dim=0).view(sigma.shape)
    return (index * skip + (skip - 1)).to(torch.float32)


def sigmas_lcm(model_sigmas: Tensor, n: int) -> Tensor:
    """LCM's "Automatic" schedule: (n+1,) float32, linear in timestep between the grid's ends, then 0."""
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    skip = _skip(model_sigmas)
    grid = lcm_grid(model_sigmas).to(torch.float32)
    start = float(lcm_timestep(grid[-1:], model_sigmas)[0])
    end = float(lcm_timestep(grid[:1], model_sigmas)[0])
    t = torch.linspace(start, end, n, dtype=torch.float32)
    frac = ((t - (skip - 1)) / skip).clamp(min=0, max=grid.shape[0] - 1)
    low, high, w = frac.floor().long(), frac.ceil().long(), frac.frac()
    log_grid = grid.log()
    sigmas = ((1 - w) * log_grid[low] + w * log_grid[high]).exp()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def lcm_boundary(timestep: Tensor, x0: Tensor, x: Tensor) -> Tensor:
    """``c_out x0 + c_skip x`` with LCM's scalings at ``timestep`` (B,) (sigma_data 0.5, scaling 10)."""
    st = (timestep * _TIMESTEP_SCALING).reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    c_skip = _SIGMA_DATA**2 / (st**2 + _SIGMA_DATA**2)
    c_out = st / (st**2 + _SIGMA_DATA**2) ** 0.5
    return c_out * x0 + c_skip * x


def sample_lcm(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """A1111 "LCM": jump to the (boundary-scaled) x0, then re-noise to the next sigma."""
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise(x)
    return x
