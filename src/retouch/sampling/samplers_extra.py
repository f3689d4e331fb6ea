"""Samplers A1111 runs outside the plain k-diffusion loop: Restart, DPM fast, DPM adaptive, DDIM (§3.2, §3.3).

Same signature and conventions as :mod:`retouch.sampling.samplers`. DPM fast and DPM adaptive take
``sigma_min = sigmas[-2]``, ``sigma_max = sigmas[0]`` and ``n = len(sigmas) - 1`` from the schedule, as
A1111 passes them; like k-diffusion they stop at ``sigma_min`` rather than at 0, and DPM adaptive chooses
its own steps (its error norm spans the whole batch, as in k-diffusion).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from retouch.sampling.samplers import (
    INF,
    Denoiser,
    NoiseFn,
    StepCallback,
    _denoise,
    _report,
    _sigma,
    _steps,
    _t,
    _to_d,
    ancestral_step,
)
from retouch.sampling.schedules import sigmas_karras

__all__ = ["sample_restart", "sample_dpm_fast", "sample_dpm_adaptive", "sample_ddim"]


def _restart_plan(sigmas: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Transitions of A1111's Restart sampler: with >= 20 steps, a shorter Karras schedule plus
    ``restart_times`` passes back up from sigma ~0.1 to sigma ~2 (restart_steps = 9, or steps // 4 with
    2 passes from 36 steps), keeping the total at ``steps`` transitions."""
    steps = sigmas.shape[0] - 1
    restarts: dict[int, tuple[int, int, float]] = {}
    if steps >= 20:
        restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
        lo, hi = float(sigmas[-2]), float(sigmas[0])
        sigmas = sigmas_karras(steps - restart_steps * restart_times, lo, hi).to(sigmas.device)
        restarts = {int((sigmas - 0.1).abs().argmin()): (restart_steps + 1, restart_times, 2.0)}
    plan = []
    for i in range(sigmas.shape[0] - 1):
        plan.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in restarts:
            n_restart, times, restart_max = restarts[i + 1]
            max_idx = int((sigmas - restart_max).abs().argmin())
            if max_idx < i + 1:
                ladder = sigmas_karras(n_restart, float(sigmas[i + 1]), float(sigmas[max_idx]))[:-1]
                plan.extend(list(zip(ladder[:-1], ladder[1:], strict=True)) * times)
    return plan


def sample_restart(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """Restart sampling (Xu et al. 2023) with Heun steps (A1111 "Restart"): where the plan jumps back up
    in sigma, noise ``s_noise * sqrt(sigma_hi² - sigma_lo²)`` is added. Callbacks report ``sigma`` as the
    step's target and ``sigma_hat`` as its start, as A1111 does."""
    _steps(sigmas)
    last = None
    for i, (old, new) in enumerate(_restart_plan(sigmas)):
        if last is None:
            last = old
        elif last < old:
            x = x + noise(x) * s_noise * (old**2 - last**2) ** 0.5
        denoised = _denoise(denoiser, x, old)
        d = _to_d(x, old, denoised)
        _report(callback, i, x, new, old, denoised)
        if new == 0:
            x = x + d * (new - old)
        else:
            x_2 = x + d * (new - old)
            d_2 = _to_d(x_2, new, _denoise(denoiser, x_2, new))
            x = x + (d + d_2) / 2 * (new - old)
        last = new
    return x


def _eps(denoiser: Denoiser, x: Tensor, t: Tensor) -> Tensor:
    """The noise prediction at log-time ``t = -log sigma``."""
    sigma = _sigma(t)
    return (x - _denoise(denoiser, x, sigma)) / sigma


def _dpm_solver_update(
    denoiser: Denoiser, x: Tensor, t: Tensor, t_next: Tensor, eps: Tensor, order: int, r1: float
) -> tuple[Tensor, Tensor | None]:
    """One DPM-Solver step of ``order`` 1, 2 or 3 (Lu et al. 2022); returns the new x and, for orders
    2 and 3, the lower-order estimate that shares its evaluations (for the adaptive error estimate)."""
    h = t_next - t
    first = x - _sigma(t_next) * h.expm1() * eps
    if order == 1:
        return first, None
    s1 = t + r1 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
    eps_r1 = _eps(denoiser, u1, s1)
    second = first - _sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
    if order == 2:
        return second, first
    r2 = 2 / 3
    s2 = t + r2 * h
    u2 = x - _sigma(s2) * (r2 * h).expm1() * eps - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (
        eps_r1 - eps
    )
    eps_r2 = _eps(denoiser, u2, s2)
    third = first - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
    return third, second


def _sigma_range(sigmas: Tensor) -> tuple[Tensor, Tensor]:
    if _steps(sigmas) < 1:
        raise ValueError("DPM fast/adaptive need a schedule of at least one step")
    sigma_min, sigma_max = sigmas[-2].to(torch.float32), sigmas[0].to(torch.float32)
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("DPM fast/adaptive need sigmas[-2] and sigmas[0] > 0")
    return sigma_min, sigma_max


def _ancestral_target(t: Tensor, t_next: Tensor, t_end: Tensor, eta: float) -> tuple[Tensor, Tensor | float]:
    """Where a DPM-Solver step lands before noise is added, and the noise size, for ancestral ``eta``."""
    if not eta:
        return t_next, 0.0
    sd, _ = ancestral_step(_sigma(t), _sigma(t_next), eta)
    t_next_ = torch.minimum(t_end, _t(sd))
    return t_next_, (_sigma(t_next) ** 2 - _sigma(t_next_) ** 2) ** 0.5


def sample_dpm_fast(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver-Fast (A1111 "DPM fast"): about n evaluations spent as third-order steps evenly spaced in
    log sigma from sigmas[0] to sigmas[-2]; ancestral noise ``s_noise * su`` after every step."""
    sigma_min, sigma_max = _sigma_range(sigmas)
    nfe = sigmas.shape[0] - 1
    t_start, t_end = _t(sigma_max), _t(sigma_min)
    m = nfe // 3 + 1
    ts = torch.linspace(float(t_start), float(t_end), m + 1, dtype=torch.float32)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        t, t_next = ts[i], ts[i + 1]
        t_next_, su = _ancestral_target(t, t_next, t_end, eta)
        eps = _eps(denoiser, x, t)
        _report(callback, i, x, _sigma(t), _sigma(t), x - _sigma(t) * eps)
        x, _ = _dpm_solver_update(denoiser, x, t, t_next_, eps, order, 1 / 3 if order == 3 else 1 / 2)
        x = x + su * s_noise * noise(x)
    return x


class _PIDStepSize:
    """PID controller for the adaptive step size (Söderlind's digital filters, as in k-diffusion)."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float, safety: float):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.safety = safety
        self.errs: list[float] = []

    def propose(self, error: float) -> bool:
        """Scale ``h`` for the next attempt; True when the step that produced ``error`` is accepted."""
        inv_error = 1 / (error + 1e-8)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        if not math.isfinite(self.h):
            raise FloatingPointError("DPM adaptive: the step size became non-finite (NaN in the model output?)")
        return accept


def sample_dpm_adaptive(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
    order: int = 3, rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05,
) -> Tensor:
    """DPM-Solver-23 with adaptive step size (A1111 "DPM adaptive"), from sigmas[0] to sigmas[-2];
    ignores the step count. k-diffusion's defaults (order 3, rtol 0.05, atol 0.0078, h_init 0.05, I-only
    controller, safety 0.81); A1111 passes eta (1.0 by default), which adds ancestral noise."""
    if order not in (2, 3):
        raise ValueError(f"order must be 2 or 3; got {order}")
    sigma_min, sigma_max = _sigma_range(sigmas)
    s, t_end = _t(sigma_max), _t(sigma_min)
    pid = _PIDStepSize(h_init, 0.0, 1.0, 0.0, 1.5 if eta else order, 0.81)
    x_prev, attempts = x, 0
    while s < t_end - 1e-5:
        t = torch.minimum(t_end, s + pid.h)
        t_, su = _ancestral_target(s, t, t_end, eta)
        eps = _eps(denoiser, x, s)
        denoised = x - _sigma(s) * eps
        x_high, x_low = _dpm_solver_update(denoiser, x, s, t_, eps, order, 1 / 3 if order == 3 else 1 / 2)
        assert x_low is not None
        delta = torch.maximum(x.new_tensor(atol), rtol * torch.maximum(x_low.abs(), x_prev.abs()))
        error = float(torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5)
        if pid.propose(error):
            x_prev = x_low
            x = x_high + su * s_noise * noise(x)
            s = t
        attempts += 1
        _report(callback, attempts - 1, x, _sigma(s), _sigma(s), denoised)
    return x


def sample_ddim(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseFn, callback: StepCallback | None = None,
    eta: float = 0.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = INF, s_noise: float = 1.0,
) -> Tensor:
    """DDIM in sigma space: ``x_next = x0 + sigma_down * eps + sigma_up * z`` (A1111 "DDIM", eta 0 default).

    Dividing DDIM's update by ``sqrt(alpha_bar_next)`` turns it into exactly this, with DDIM's
    ``sigma_t(eta)`` becoming the ancestral ``sigma_up`` of spec §3.4; at eta = 0 it equals Euler. It runs
    on the schedule given (the "DDIM" schedule reproduces A1111's timestep grid ``1 + k (1000 // N)``).
    A1111's timestep-sampler quirks (§3.3) are not reproduced: its img2img noising with
    ``sqrt(alpha_bar)`` at ``timesteps[t_enc]``, its first evaluation one grid point below that level
    (``t_enc - 1`` evaluations), and its mask blend on the noisy input before each evaluation; here
    DDIM follows the same sigma-tail and x0-blend path as every other sampler.
    """
    for i in range(_steps(sigmas)):
        denoised = _denoise(denoiser, x, sigmas[i])
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = denoised + _to_d(x, sigmas[i], denoised) * sigma_down
        if eta and sigmas[i + 1] > 0:
            x = x + noise(x) * sigma_up
    return x
