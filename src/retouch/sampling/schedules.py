"""Sigma schedules and the denoising-strength step arithmetic (spec §3.1, §3.2, §3.4).

All schedules follow k-diffusion's variance-exploding convention: a schedule is a descending 1-D
float32 tensor of noise levels ``sigma`` whose last entry is the end point of sampling (0 for every
schedule except A1111's "KL Optimal", which ends at ``sigma_min``; and A1111's "DDIM" grid has more
than ``n + 1`` entries when 1000 is not divisible by ``n``; both quirks are reproduced on purpose).

The model's own noise levels come from :func:`model_sigmas` (ascending, one per training timestep).
Conversions between a sigma and a fractional timestep interpolate ``log sigma`` linearly between
integer timesteps, as k-diffusion's ``DiscreteSchedule`` does.

Arithmetic is done the way A1111 v1.10.1 (with k-diffusion ``ab527a9a``) does it, float32 tensors
with Python-float parameters, so the values agree with A1111's to float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "scaled_linear_alphas_cumprod",
    "model_sigmas",
    "sigma_to_t",
    "t_to_sigma",
    "sigmas_automatic",
    "sigmas_uniform",
    "sigmas_karras",
    "sigmas_exponential",
    "sigmas_polyexponential",
    "sigmas_sgm_uniform",
    "sigmas_kl_optimal",
    "sigmas_align_your_steps",
    "sigmas_simple",
    "sigmas_normal",
    "sigmas_ddim",
    "sigmas_beta",
    "beta_ppf",
    "img2img_steps",
    "sigma_tail",
]

_F32 = torch.float32

#: Align Your Steps reference schedules (NVIDIA, 10 steps), as listed by A1111 (spec §3.4).
_AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
_AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of schedule steps must be an integer >= 1; got {n!r}")


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def scaled_linear_alphas_cumprod(
    beta_start: float = 0.00085, beta_end: float = 0.012, timesteps: int = 1000
) -> Tensor:
    """SD's "scaled linear" alpha_bar as LDM/A1111 compute it (spec §3.4): float64 maths, float32 result.

    ``beta = linspace(sqrt(beta_start), sqrt(beta_end), T)^2``, ``alpha_bar = cumprod(1 - beta)``. (T,).
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(_F32)


def model_sigmas(alphas_cumprod: Tensor) -> Tensor:
    """Model noise levels ``sqrt((1 - alpha_bar) / alpha_bar)`` (spec §3.4), float32, ascending.

    ``alphas_cumprod``: (T,) cumulative products of ``1 - beta`` (T = 1000 for SD). Computed in float32
    from float32 alpha_bar, as LDM/A1111 store it. For SD's scaled-linear schedule the result runs
    from about 0.0292 to 14.6146.
    """
    a = alphas_cumprod.detach().to(device="cpu", dtype=_F32)
    return ((1 - a) / a) ** 0.5


def sigma_to_t(sigma: Tensor, sigmas: Tensor) -> Tensor:
    """Fractional timestep of each noise level (k-diffusion ``DiscreteSchedule.sigma_to_t``, §3.4).

    ``log sigma`` is interpolated linearly between the two neighbouring integer timesteps of the
    ascending model ``sigmas`` (T,); values outside the model's range clamp to 0 and T-1. Returns a
    float32 tensor shaped like ``sigma``, on ``sigma``'s device.
    """
    log_sigmas = sigmas.to(device=sigma.device, dtype=_F32).log()
    log_sigma = sigma.to(_F32).log()
    flat = log_sigma.reshape(-1)
    low_idx = torch.searchsorted(log_sigmas, flat, right=True) - 1
    low_idx = low_idx.clamp(min=0, max=log_sigmas.shape[0] - 2)
    high_idx = low_idx + 1
    low, high = log_sigmas[low_idx], log_sigmas[high_idx]
    w = ((low - flat) / (low - high)).clamp(0, 1)
    t = (1 - w) * low_idx + w * high_idx
    return t.view(sigma.shape)


def t_to_sigma(t: Tensor, sigmas: Tensor) -> Tensor:
    """Noise level at fractional timestep ``t`` (k-diffusion ``DiscreteSchedule.t_to_sigma``, §3.4).

    Interpolates ``log sigma`` linearly between ``floor(t)`` and ``ceil(t)`` of the ascending model
    ``sigmas`` (T,). ``t`` in [0, T-1]; returns float32 shaped like ``t``.
    """
    t = t.to(_F32)
    log_sigmas = sigmas.to(device=t.device, dtype=_F32).log()
    low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
    log_sigma = (1 - w) * log_sigmas[low_idx] + w * log_sigmas[high_idx]
    return log_sigma.exp()


def sigmas_automatic(sigmas: Tensor, n: int) -> Tensor:
    """k-diffusion's default discretization (A1111 "Automatic" without a sampler default, §3.4).

    ``t = linspace(T-1, 0, n)``, ``sigma(t)`` by log-sigma interpolation, then 0: (n+1,) float32.
    """
    _check_n(n)
    t = torch.linspace(sigmas.shape[0] - 1, 0, n, dtype=_F32)
    return _append_zero(t_to_sigma(t, sigmas))


def sigmas_uniform(sigmas: Tensor, n: int) -> Tensor:
    """A1111 "Uniform": the model's own discretization, identical to :func:`sigmas_automatic`.

    It ignores any ``sigma_min``/``sigma_max`` override, as A1111 does.
    """
    return sigmas_automatic(sigmas, n)


def sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022) schedule (A1111 "Karras", §3.4), (n+1,) float32 ending in 0.

    ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``.
    """
    _check_n(n)
    ramp = torch.linspace(0, 1, n, dtype=_F32)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def sigmas_exponential(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Log-uniform schedule (A1111 "Exponential", §3.4): ``exp(linspace(ln max, ln min, n))``, then 0."""
    _check_n(n)
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=_F32).exp())


def sigmas_polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Tensor:
    """Polynomial in log sigma (A1111 "Polyexponential", rho = 1 by default), then 0.

    ``sigma = exp(linspace(1, 0, n)^rho (ln max - ln min) + ln min)``; rho = 1 equals Exponential.
    """
    _check_n(n)
    ramp = torch.linspace(1, 0, n, dtype=_F32) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def _t_range(sigmas: Tensor, sigma_min: float | None, sigma_max: float | None) -> tuple[Tensor, Tensor]:
    lo = float(sigmas[0]) if sigma_min is None else sigma_min
    hi = float(sigmas[-1]) if sigma_max is None else sigma_max
    start = sigma_to_t(torch.tensor(hi, dtype=_F32), sigmas)
    end = sigma_to_t(torch.tensor(lo, dtype=_F32), sigmas)
    return start, end


def sigmas_sgm_uniform(
    sigmas: Tensor, n: int, sigma_min: float | None = None, sigma_max: float | None = None
) -> Tensor:
    """A1111 "SGM Uniform": n timesteps evenly spaced from t(sigma_max) towards t(sigma_min), the end
    point excluded (``linspace(start, end, n + 1)[:-1]``), mapped to sigma, then 0. Defaults to the
    model's own sigma range."""
    _check_n(n)
    start, end = _t_range(sigmas, sigma_min, sigma_max)
    t = torch.linspace(float(start), float(end), n + 1, dtype=_F32)[:-1]
    return _append_zero(t_to_sigma(t, sigmas))


def sigmas_normal(sigmas: Tensor, n: int, sigma_min: float | None = None, sigma_max: float | None = None) -> Tensor:
    """A1111 "Normal": n timesteps evenly spaced from t(sigma_max) to t(sigma_min) inclusive, then 0.

    With the model's own range this equals :func:`sigmas_automatic`."""
    _check_n(n)
    start, end = _t_range(sigmas, sigma_min, sigma_max)
    t = torch.linspace(float(start), float(end), n, dtype=_F32)
    return _append_zero(t_to_sigma(t, sigmas))


def sigmas_simple(sigmas: Tensor, n: int) -> Tensor:
    """A1111 "Simple": every ``T/n``-th model sigma from the top (``sigmas[-(1 + int(k T/n))]``), then 0."""
    _check_n(n)
    stride = sigmas.shape[0] / n
    picked = [float(sigmas[-(1 + int(k * stride))]) for k in range(n)]
    return torch.tensor([*picked, 0.0], dtype=_F32)


def sigmas_ddim(sigmas: Tensor, n: int) -> Tensor:
    """A1111 "DDIM": model sigmas at timesteps ``1 + k (T // n)`` below T, descending, then 0 (§3.3).

    Like A1111's timestep grid this has more than n+1 entries when T is not divisible by n (n = 7 gives
    8 sigmas plus the 0)."""
    _check_n(n)
    stride = max(sigmas.shape[0] // n, 1)
    picked = [float(sigmas[t]) for t in range(1, sigmas.shape[0], stride)]
    return torch.tensor([*picked[::-1], 0.0], dtype=_F32)


def sigmas_kl_optimal(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """A1111 "KL Optimal": ``tan`` of n+1 points evenly spaced from atan(sigma_max) to atan(sigma_min).

    As in A1111 v1.10.1 there is no appended 0: the (n+1,) schedule ends at ``sigma_min``, so sampling
    stops at that noise level."""
    _check_n(n)
    alpha_min = torch.arctan(torch.tensor(sigma_min, dtype=_F32))
    alpha_max = torch.arctan(torch.tensor(sigma_max, dtype=_F32))
    k = torch.arange(n + 1, dtype=_F32)
    return torch.tan(k / n * alpha_min + (1.0 - k / n) * alpha_max)


def sigmas_align_your_steps(n: int, sdxl: bool = False) -> Tensor:
    """A1111 "Align Your Steps": NVIDIA's 10-step SD1.5 (or SDXL) sigmas, log-linearly resampled to n
    points when n != 11, then 0. Independent of the model's sigma range, as in A1111."""
    _check_n(n)
    ref = _AYS_SDXL if sdxl else _AYS_SD15
    if n == len(ref):
        return torch.tensor([*ref, 0.0], dtype=_F32)
    xs = np.linspace(0, 1, len(ref))
    ys = np.log(np.asarray(ref[::-1], dtype=np.float64))
    resampled = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1]
    return torch.tensor([*resampled.tolist(), 0.0], dtype=_F32)


def sigmas_beta(n: int, sigma_min: float, sigma_max: float, alpha: float = 0.6, beta: float = 0.6) -> Tensor:
    """A1111 "Beta" (Lee et al. 2024): ``sigma_min + ppf(1 - k/(n-1)) (sigma_max - sigma_min)`` for the
    Beta(alpha, beta) quantile function, k = 0..n-1, then 0. A1111's default alpha = beta = 0.6."""
    _check_n(n)
    qs = [beta_ppf(float(u), alpha, beta) for u in 1 - np.linspace(0, 1, n)]
    return torch.tensor([*(sigma_min + q * (sigma_max - sigma_min) for q in qs), 0.0], dtype=_F32)


def _betainc_cf(x: float, a: float, b: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return f


def _betainc(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betainc_cf(x, a, b) / a
    return 1.0 - math.exp(log_front) * _betainc_cf(1.0 - x, b, a) / b


def beta_ppf(q: float, alpha: float, beta: float) -> float:
    """Quantile function of the Beta(alpha, beta) distribution, by bisection on I_x (float64 exact).

    Stands in for ``scipy.stats.beta.ppf`` (no scipy dependency); ``q`` in [0, 1]."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"beta_ppf: q must be in [0, 1]; got {q!r}")
    if q in (0.0, 1.0):
        return q
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _betainc(mid, alpha, beta) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def img2img_steps(steps: int, strength: float, fix_steps: bool) -> tuple[int, int]:
    """Schedule length N and ``t_enc`` for a denoising strength (A1111 ``setup_img2img_steps``, §3.1).

    Default: ``N = steps``, ``t_enc = int(min(strength, 0.999) * steps)`` (float product, truncated).
    Fix steps: ``N = int(steps / min(strength, 0.999))`` (0 when strength is 0, A1111's broken case,
    which :func:`sigma_tail` then rejects), ``t_enc = steps - 1``. The sampler executes ``t_enc + 1``
    steps. Strengths above 1 act as 0.999, as in A1111.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    if not math.isfinite(strength) or strength < 0:
        raise ValueError(f"denoising strength must be a finite number >= 0; got {strength!r}")
    d = min(float(strength), 0.999)
    if fix_steps:
        return (int(steps / d) if strength > 0 else 0), steps - 1
    return steps, int(d * steps)


def sigma_tail(sigmas: Tensor, t_enc: int, steps: int | None = None) -> Tensor:
    """The part of a schedule an img2img job runs: ``sigmas[N - t_enc - 1:]`` (spec §3.2 step 2).

    ``sigmas``: the full schedule from :func:`~retouch.sampling.registry.build_sigmas`; ``N`` is
    ``steps`` when given (what A1111 slices with) else ``len(sigmas) - 1``. Returns ``t_enc + 2``
    values (``t_enc + 1`` transitions) when ``len(sigmas) == N + 1``; the first is the start noise level.
    """
    n = sigmas.shape[0] - 1 if steps is None else steps
    start = n - t_enc - 1
    if t_enc < 0 or start < 0 or start >= sigmas.shape[0] - 1:
        raise ValueError(
            f"t_enc must be in [0, {n - 1}] for a schedule of {n} steps; got t_enc={t_enc} "
            "(a denoising strength of 0 with 'fix steps' gives no schedule at all)"
        )
    return sigmas[start:]
