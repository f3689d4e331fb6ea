"""Samplers: small pure functions in k-diffusion's shape, one signature for all (spec §3.2, §3.4).

``sample_xxx(denoiser, x, sigmas, *, noise, callback=None, eta, s_churn, s_tmin, s_tmax, s_noise) -> x``

* ``denoiser(x, sigma) -> x0``: ``x`` (B, ...) is the noisy latent in variance-exploding form
  (``x = x0 + sigma * eps``), ``sigma`` a (B,) tensor (``sigma * x.new_ones(B)``).
* ``sigmas``: the descending 1-D float32 schedule to run (for img2img the tail from
  :func:`~retouch.sampling.schedules.sigma_tail`), ideally on the CPU; ``x`` starts at ``sigmas[0]``.
* ``noise(like)``: a standard-normal tensor shaped like ``like``. The engine passes each image's own
  seeded stream (:meth:`~retouch.sampling.noise.ImageNoise.next`), as A1111 redirects every
  ``torch.randn_like`` of k-diffusion to its per-image generators. Draws happen exactly where
  k-diffusion ``ab527a9a`` draws, so the streams line up with A1111's; the one exception is that
  Euler/Heun/DPM2 skip the churn draws when ``s_churn == 0`` (A1111 draws and discards them).
* ``callback(SamplerStep)`` once per step, with the step's first x0 estimate.
* Knobs a sampler does not use are accepted and ignored (Euler a also ignores ``s_noise``).

The arithmetic follows k-diffusion (float32 0-d sigma tensors), so results match A1111's to rounding.
SDE samplers (DPM++ SDE, DPM++ 2M SDE, DPM++ 3M SDE) take their noise from ``noise`` instead of
torchsde's Brownian tree (no torchsde dependency). The Brownian increments they need are over disjoint
sigma intervals, hence independent normals, except the two overlapping ones of a DPM++ SDE step, which
are built with the Brownian path's correlation; so the joint law of all draws is A1111's, though the
numbers differ from its Brownian-tree draws. Restart, DPM fast, DPM adaptive and DDIM are in :mod:`retouch.sampling.samplers_extra`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

__all__ = [
    "Denoiser",
    "NoiseFn",
    "SamplerStep",
    "StepCallback",
    "Sampler",
    "ancestral_step",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_dpm_2",
    "sample_dpm_2_ancestral",
    "sample_lms",
    "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_sde",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_2m_sde_heun",
    "sample_dpmpp_3m_sde",
]

INF = math.inf

Denoiser = Callable[[Tensor, Tensor], Tensor]
NoiseFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class SamplerStep:
    """What a sampler reports once per step: step index ``i`` (0-based), the current ``x``, the step's
    scheduled ``sigma`` and the ``sigma_hat`` the model was called at (they differ with churn), and
    the model's x0 estimate ``denoised``."""

    i: int
    x: Tensor
    sigma: float
    sigma_hat: float
    denoised: Tensor


StepCallback = Callable[[SamplerStep], None]
#: The common shape of every ``sample_xxx`` function.
Sampler = Callable[..., Tensor]


def _denoise(denoiser: Denoiser, x: Tensor, sigma: Tensor) -> Tensor:
    return denoiser(x, sigma * x.new_ones([x.shape[0]]))


def _to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """The probability-flow ODE derivative dx/dsigma = (x - x0) / sigma."""
    return (x - denoised) / sigma


def _report(callback: StepCallback | None, i: int, x: Tensor, sigma, sigma_hat, denoised: Tensor) -> None:
    if callback is not None:
        callback(SamplerStep(i, x, float(sigma), float(sigma_hat), denoised))


def _steps(sigmas: Tensor) -> int:
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D tensor; got shape {tuple(sigmas.shape)}")
    return sigmas.shape[0] - 1


def ancestral_step(sigma: Tensor, sigma_next: Tensor, eta: float = 1.0):
    """Split a step into a deterministic part and fresh noise (spec §3.4 "Ancestral step").

    ``sigma_up = min(sigma_next, eta sqrt(sigma_next² (sigma² - sigma_next²) / sigma²))`` and
    ``sigma_down = sqrt(sigma_next² - sigma_up²)``; returns ``(sigma_down, sigma_up)``.
    """
    if not eta:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def _churn(x: Tensor, sigma: Tensor, steps: int, noise: NoiseFn, s_churn, s_tmin, s_tmax, s_noise):
    """Karras et al. Algorithm 2 noise increase: raise sigma by ``gamma`` and add matching noise."""
    gamma = min(s_churn / steps, 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
    eps = noise(x) * s_noise if s_churn > 0 else None
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0 and eps is not None:
        x = x + eps * (sigma_hat**2 - sigma**2) ** 0.5
    return x, sigma_hat


def sample_euler(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """Euler steps of the probability-flow ODE with optional churn (A1111 "Euler"; Karras Alg. 2)."""
    n = _steps(sigmas)
    for i in range(n):
        x, sigma_hat = _churn(x, sigmas[i], n, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = _denoise(denoiser, x, sigma_hat)
        d = _to_d(x, sigma_hat, denoised)
        _report(callback, i, x, sigmas[i], sigma_hat, denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


def sample_euler_ancestral(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """Euler step to sigma_down, then fresh noise of size sigma_up (A1111 "Euler a"; s_noise ignored)."""
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        x = x + _to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise(x) * sigma_up
    return x


def sample_heun(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """Heun's second-order method with optional churn (A1111 "Heun"; Karras Alg. 2); Euler to sigma 0."""
    n = _steps(sigmas)
    for i in range(n):
        x, sigma_hat = _churn(x, sigmas[i], n, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = _denoise(denoiser, x, sigma_hat)
        d = _to_d(x, sigma_hat, denoised)
        _report(callback, i, x, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = _to_d(x_2, sigmas[i + 1], _denoise(denoiser, x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
    return x


def sample_dpm_2(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver-2 style midpoint steps, midpoint at the geometric mean of the two sigmas (A1111
    "DPM2"), with optional churn; Euler for the step to sigma 0."""
    n = _steps(sigmas)
    for i in range(n):
        x, sigma_hat = _churn(x, sigmas[i], n, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = _denoise(denoiser, x, sigma_hat)
        d = _to_d(x, sigma_hat, denoised)
        _report(callback, i, x, sigmas[i], sigma_hat, denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            x = _dpm2_midpoint(denoiser, x, d, sigma_hat, sigmas[i + 1])
    return x


def _dpm2_midpoint(denoiser: Denoiser, x: Tensor, d: Tensor, sigma: Tensor, sigma_to: Tensor) -> Tensor:
    sigma_mid = sigma.log().lerp(sigma_to.log(), 0.5).exp()
    x_2 = x + d * (sigma_mid - sigma)
    d_2 = _to_d(x_2, sigma_mid, _denoise(denoiser, x_2, sigma_mid))
    return x + d_2 * (sigma_to - sigma)


def sample_dpm_2_ancestral(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """DPM2 midpoint step to sigma_down, then noise ``s_noise * sigma_up`` (A1111 "DPM2 a")."""
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        d = _to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            x = _dpm2_midpoint(denoiser, x, d, sigmas[i], sigma_down)
            x = x + noise(x) * s_noise * sigma_up
    return x


def _lms_coeff(order: int, t: np.ndarray, i: int, j: int) -> float:
    """Integral over [t_i, t_{i+1}] of the j-th Lagrange basis polynomial on t_i, ..., t_{i-order+1}.

    Integrated exactly (polynomial antiderivative, float64) where k-diffusion uses scipy's quadrature."""
    poly = np.polynomial.Polynomial([1.0])
    for k in range(order):
        if k != j:
            poly = poly * np.polynomial.Polynomial([-t[i - k], 1.0]) / (t[i - j] - t[i - k])
    antiderivative = poly.integ()
    return float(antiderivative(t[i + 1]) - antiderivative(t[i]))


def sample_lms(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
    order: int = 4,
) -> Tensor:
    """Linear multistep (Adams-Bashforth in sigma) of order up to ``order`` = 4 (A1111 "LMS")."""
    t = sigmas.detach().cpu().numpy().astype(np.float64)
    ds: list[Tensor] = []
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        ds = [*ds, _to_d(x, sigmas[i], denoised)][-order:]
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        cur = min(i + 1, order)
        coeffs = [_lms_coeff(cur, t, i, j) for j in range(cur)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds), strict=True))
    return x


def _t(sigma: Tensor) -> Tensor:
    return sigma.log().neg()


def _sigma(t: Tensor) -> Tensor:
    return t.neg().exp()


def sample_dpmpp_2s_ancestral(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver++(2S) single-step to sigma_down, then ancestral noise (A1111 "DPM++ 2S a")."""
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = x + _to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = _denoise(denoiser, x_2, _sigma(s))
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(x) * s_noise * sigma_up
    return x


def sample_dpmpp_sde(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
    r: float = 0.5,
) -> Tensor:
    """Stochastic DPM-Solver++ with an intermediate evaluation at ratio ``r`` (A1111 "DPM++ SDE").

    A1111 draws both noises of a step from one Brownian path (sigma as time): the increments over
    [sigma_s, sigma] and [sigma_next, sigma] overlap, so their normalised draws have correlation
    ``rho = sqrt((sigma - sigma_s) / (sigma - sigma_next))``. Here the second draw is built as
    ``rho z_1 + sqrt(1 - rho²) z_2`` from two ``noise`` draws, which gives the same joint law."""
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + _to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        sd, su = ancestral_step(_sigma(t), _sigma(s), eta)
        s_ = _t(sd)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        z_1 = noise(x)
        x_2 = x_2 + z_1 * s_noise * su
        denoised_2 = _denoise(denoiser, x_2, _sigma(s))
        sd, su = ancestral_step(_sigma(t), _sigma(t_next), eta)
        t_next_ = _t(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * denoised_d
        rho = ((sigmas[i] - _sigma(s)) / (sigmas[i] - sigmas[i + 1])) ** 0.5
        x = x + (rho * z_1 + (1 - rho**2) ** 0.5 * noise(x)) * s_noise * su
    return x


def sample_dpmpp_2m(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver++(2M) multistep (A1111 "DPM++ 2M"); first-order on the first and last steps."""
    old_denoised = None
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _t(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


def sample_dpmpp_2m_sde(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
    solver_type: str = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M) SDE (A1111 "DPM++ 2M SDE"; ``solver_type="heun"`` is "DPM++ 2M SDE Heun").

    The step to sigma 0 returns the x0 estimate. Noise comes from ``noise`` (module docstring)."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun'; got {solver_type!r}")
    old_denoised: Any = None
    h_last: Any = None
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            eta_h = eta * h
            phi = (-h - eta_h).expm1().neg()
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + phi * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + (phi / (-h - eta_h) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * phi * (1 / r) * (denoised - old_denoised)
            if eta:
                x = x + noise(x) * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * s_noise
            h_last = h
        old_denoised = denoised
    return x


def sample_dpmpp_2m_sde_heun(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """A1111 "DPM++ 2M SDE Heun": :func:`sample_dpmpp_2m_sde` with ``solver_type="heun"``."""
    return sample_dpmpp_2m_sde(
        denoiser, x, sigmas, noise=noise, callback=callback, eta=eta, s_noise=s_noise, solver_type="heun"
    )


def sample_dpmpp_3m_sde(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver++(3M) SDE (A1111 "DPM++ 3M SDE"); the step to sigma 0 returns the x0 estimate."""
    denoised_1: Any = None
    denoised_2: Any = None
    h_1: Any = None
    h_2: Any = None
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            h_eta = h * (eta + 1)
            x = (-h_eta).exp() * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:
                x = x + phi_2 * ((denoised - denoised_1) / (h_1 / h))
            if eta:
                x = x + noise(x) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
            h_1, h_2 = h, h_1
        denoised_1, denoised_2 = denoised, denoised_1
    return x
