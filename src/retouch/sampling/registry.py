"""A1111's sampler and schedule-type names mapped to our functions (spec §3.2, §3.4, §5.2).

This module and ``server/a1111`` are the only places holding A1111's display names. Lookups are
case-insensitive over names, labels and aliases; an unknown name raises
:class:`retouch.params.ParamError` listing every valid one (A1111 silently falls back to its first
sampler; we refuse instead).

Not provided: A1111's DDIM CFG++, PLMS, UniPC and LCM samplers. DDIM is run as a sigma-space sampler
(see :func:`~retouch.sampling.samplers_extra.sample_ddim`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from retouch.params import ParamError
from retouch.sampling import lcm
from retouch.sampling import samplers as s
from retouch.sampling import samplers_extra as sx
from retouch.sampling import schedules as sch

__all__ = [
    "SamplerSpec",
    "ScheduleArgs",
    "ScheduleFn",
    "SAMPLERS",
    "SCHEDULERS",
    "get_sampler",
    "get_scheduler",
    "split_sampler_name",
    "build_sigmas",
    "check_schedule",
    "resolved_scheduler_label",
]


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler: display ``name``, sampling function ``fn`` and the facts the engine needs.

    ``default_scheduler``: the schedule name used for "Automatic" (None: k-diffusion's default
    discretization). ``second_order``: two model calls per step (progress counts, spec §3.5).
    ``uses_eta`` / ``uses_s_noise`` / ``uses_churn``: which knobs A1111 passes to it.
    ``discard_next_to_last_sigma``: request N+1 sigmas and drop the penultimate one. ``uses_ensd``:
    ENSD is written to the infotext (when ENSD != 0 and eta != 0). ``default_eta``: eta when the job
    gives none (A1111 options ``eta_ancestral`` = 1.0, ``eta_ddim`` = 0.0). ``timestep_sampler``: one of
    A1111's timestep samplers, whose "Automatic" schedule is the DDIM timestep grid. ``lcm``: A1111's
    LCM sampler, which sees the model through its 50-step grid (:mod:`retouch.sampling.lcm`).
    """

    name: str
    fn: Callable[..., Tensor]
    aliases: tuple[str, ...]
    default_scheduler: str | None
    second_order: bool
    uses_eta: bool
    uses_s_noise: bool
    uses_churn: bool
    discard_next_to_last_sigma: bool = False
    uses_ensd: bool = False
    default_eta: float = 1.0
    timestep_sampler: bool = False
    lcm: bool = False


@dataclass(frozen=True)
class ScheduleArgs:
    """Inputs every schedule function receives: ``n`` steps, the model's ascending sigmas, the sigma
    range to use, ``rho`` (None: the schedule's default), whether the model is SDXL (Align Your Steps)
    and the Beta schedule's alpha/beta."""

    n: int
    model_sigmas: Tensor
    sigma_min: float
    sigma_max: float
    rho: float | None = None
    sdxl: bool = False
    beta_alpha: float = 0.6
    beta_beta: float = 0.6


ScheduleFn = Callable[[ScheduleArgs], Tensor]


def _spec(name, fn, aliases, scheduler=None, *, second=False, eta=False, s_noise=False, churn=False, **kw):
    return SamplerSpec(name, fn, tuple(aliases), scheduler, second, eta, s_noise, churn, **kw)


_SAMPLER_LIST = (
    _spec("DPM++ 2M", s.sample_dpmpp_2m, ["k_dpmpp_2m"], "karras"),
    _spec("DPM++ SDE", s.sample_dpmpp_sde, ["k_dpmpp_sde"], "karras", second=True, eta=True, s_noise=True),
    _spec("DPM++ 2M SDE", s.sample_dpmpp_2m_sde, ["k_dpmpp_2m_sde"], "exponential", eta=True, s_noise=True),
    _spec(
        "DPM++ 2M SDE Heun", s.sample_dpmpp_2m_sde_heun, ["k_dpmpp_2m_sde_heun"], "exponential",
        eta=True, s_noise=True,
    ),
    _spec(
        "DPM++ 2S a", s.sample_dpmpp_2s_ancestral, ["k_dpmpp_2s_a"], "karras",
        second=True, eta=True, s_noise=True, uses_ensd=True,
    ),
    _spec(
        "DPM++ 3M SDE", s.sample_dpmpp_3m_sde, ["k_dpmpp_3m_sde"], "exponential",
        eta=True, s_noise=True, discard_next_to_last_sigma=True,
    ),
    _spec("Euler a", s.sample_euler_ancestral, ["k_euler_a", "k_euler_ancestral"], eta=True, uses_ensd=True),
    _spec("Euler", s.sample_euler, ["k_euler"], s_noise=True, churn=True),
    _spec("LMS", s.sample_lms, ["k_lms"]),
    _spec("Heun", s.sample_heun, ["k_heun"], second=True, s_noise=True, churn=True),
    _spec(
        "DPM2", s.sample_dpm_2, ["k_dpm_2"], "karras",
        second=True, s_noise=True, churn=True, discard_next_to_last_sigma=True,
    ),
    _spec(
        "DPM2 a", s.sample_dpm_2_ancestral, ["k_dpm_2_a"], "karras",
        second=True, eta=True, s_noise=True, discard_next_to_last_sigma=True, uses_ensd=True,
    ),
    _spec("DPM fast", sx.sample_dpm_fast, ["k_dpm_fast"], eta=True, s_noise=True, uses_ensd=True),
    _spec("DPM adaptive", sx.sample_dpm_adaptive, ["k_dpm_ad"], eta=True, uses_ensd=True),
    _spec("Restart", sx.sample_restart, ["restart"], "karras", second=True),
    _spec("DDIM", sx.sample_ddim, ["ddim"], eta=True, uses_ensd=True, default_eta=0.0, timestep_sampler=True),
    _spec("LCM", lcm.sample_lcm, ["k_lcm"], lcm=True),
)

#: A1111's samplers in its list order (DPM++ 2M first), by display name.
SAMPLERS: Mapping[str, SamplerSpec] = MappingProxyType({spec.name: spec for spec in _SAMPLER_LIST})


def _rho(a: ScheduleArgs, default: float) -> float:
    return default if a.rho is None else a.rho


_SCHEDULER_LIST: tuple[tuple[str, str, ScheduleFn | None, tuple[str, ...]], ...] = (
    ("automatic", "Automatic", None, ()),
    ("uniform", "Uniform", lambda a: sch.sigmas_uniform(a.model_sigmas, a.n), ()),
    ("karras", "Karras", lambda a: sch.sigmas_karras(a.n, a.sigma_min, a.sigma_max, _rho(a, 7.0)), ()),
    ("exponential", "Exponential", lambda a: sch.sigmas_exponential(a.n, a.sigma_min, a.sigma_max), ()),
    (
        "polyexponential", "Polyexponential",
        lambda a: sch.sigmas_polyexponential(a.n, a.sigma_min, a.sigma_max, _rho(a, 1.0)), (),
    ),
    (
        "sgm_uniform", "SGM Uniform",
        lambda a: sch.sigmas_sgm_uniform(a.model_sigmas, a.n, a.sigma_min, a.sigma_max), ("SGMUniform",),
    ),
    ("kl_optimal", "KL Optimal", lambda a: sch.sigmas_kl_optimal(a.n, a.sigma_min, a.sigma_max), ()),
    ("align_your_steps", "Align Your Steps", lambda a: sch.sigmas_align_your_steps(a.n, a.sdxl), ()),
    ("simple", "Simple", lambda a: sch.sigmas_simple(a.model_sigmas, a.n), ()),
    ("normal", "Normal", lambda a: sch.sigmas_normal(a.model_sigmas, a.n, a.sigma_min, a.sigma_max), ()),
    ("ddim", "DDIM", lambda a: sch.sigmas_ddim(a.model_sigmas, a.n), ()),
    (
        "beta", "Beta",
        lambda a: sch.sigmas_beta(a.n, a.sigma_min, a.sigma_max, a.beta_alpha, a.beta_beta), (),
    ),
)

#: Schedule types that read the model's own timestep table, which LCM replaces by its grid: refused with it.
_LCM_REFUSED = frozenset({"sgm_uniform", "simple", "normal", "ddim"})

#: Schedule types in A1111's order: name -> (label, function); "automatic" has no function of its own.
SCHEDULERS: Mapping[str, tuple[str, ScheduleFn | None]] = MappingProxyType(
    {name: (label, fn) for name, label, fn, _ in _SCHEDULER_LIST}
)

_SAMPLER_KEYS = MappingProxyType(
    {key.lower(): spec for spec in _SAMPLER_LIST for key in (spec.name, *spec.aliases)}
)
_SCHEDULER_KEYS = MappingProxyType(
    {key.lower(): name for name, label, _, aliases in _SCHEDULER_LIST for key in (name, label, *aliases)}
)
_LABELS = MappingProxyType({name: label for name, label, _, _ in _SCHEDULER_LIST})


def get_sampler(name: str) -> SamplerSpec:
    """The sampler called ``name`` (display name or alias such as "k_euler_a", any case)."""
    spec = _SAMPLER_KEYS.get(str(name).strip().lower())
    if spec is None:
        raise ParamError(f"unknown sampler {name!r}; valid samplers: {', '.join(SAMPLERS)}")
    return spec


def _scheduler_name(name_or_label: str) -> str:
    key = _SCHEDULER_KEYS.get(str(name_or_label).strip().lower())
    if key is None:
        valid = ", ".join(f"{label} ({name})" for name, label in _LABELS.items())
        raise ParamError(f"unknown schedule type {name_or_label!r}; valid schedule types: {valid}")
    return key


def get_scheduler(name_or_label: str) -> str:
    """Canonical label ("Karras") of a schedule type given by name ("karras"), label or alias."""
    return _LABELS[_scheduler_name(name_or_label)]


def split_sampler_name(name: str) -> tuple[str, str | None]:
    """Split a schedule-type suffix off a sampler name (spec §1 step 3, §8 item 16).

    "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"); "Euler a" -> ("Euler a", None). Only the last
    word(s) matching a schedule label or alias (any case) are split off; the rest is not validated.
    """
    text = str(name).strip()
    for _, label, _, aliases in _SCHEDULER_LIST:
        for option in (label, *aliases):
            suffix = " " + option
            if len(text) > len(suffix) and text.lower().endswith(suffix.lower()):
                return text[: -len(suffix)].rstrip(), label
    return text, None


def _resolved_name(sampler: SamplerSpec, scheduler: str) -> str | None:
    name = _scheduler_name(scheduler)
    if name == "automatic":
        return sampler.default_scheduler
    return name


def check_schedule(sampler: SamplerSpec, scheduler: str) -> None:
    """Refuse a schedule type the sampler cannot run (LCM with one that reads the model's timesteps)."""
    name = _resolved_name(sampler, scheduler)
    if sampler.lcm and name in _LCM_REFUSED:
        allowed = ", ".join(_LABELS[k] for k in _LABELS if k not in _LCM_REFUSED)
        raise ParamError(f"schedule type {_LABELS[name]!r} is not available with the LCM sampler "
                         f"(it reads the model's own timestep table, which LCM replaces); allowed: {allowed}")


def resolved_scheduler_label(sampler: SamplerSpec, scheduler: str) -> str:
    """What A1111's infotext shows as "Schedule type" (spec §6.2): "Automatic" becomes the sampler's
    default label when it has one (DPM++ 2M -> "Karras"), else stays "Automatic" (Euler, DDIM)."""
    name = _resolved_name(sampler, scheduler)
    return "Automatic" if name is None else _LABELS[name]


def build_sigmas(
    sampler: SamplerSpec,
    scheduler: str,
    n: int,
    model_sigmas: Tensor,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float | None = None,
    sdxl: bool = False,
    discard_penultimate: bool = False,
    beta_alpha: float = 0.6,
    beta_beta: float = 0.6,
) -> Tensor:
    """The full N-step schedule for ``sampler`` and schedule type ``scheduler`` (A1111 ``get_sigmas``,
    spec §3.2 step 1, §3.4): (n+1,) float32 on the CPU, ending in 0.

    "Automatic" resolves to the sampler's default (Karras / Exponential) or else to k-diffusion's
    default discretization (the DDIM timestep grid for DDIM). ``sigma_min``/``sigma_max``/``rho``
    override the model's range and the schedule's rho (A1111 options whose 0 means None here).
    Samplers flagged ``discard_next_to_last_sigma`` (or ``discard_penultimate=True``, A1111's
    ``always_discard_next_to_last_sigma``) get n+1 steps with the penultimate sigma dropped.
    Exceptions inherited from A1111: "KL Optimal" ends at sigma_min instead of 0, and the DDIM grid
    has extra entries when 1000 is not divisible by n.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ParamError(f"steps must be an integer >= 1; got {n!r}")
    if rho is not None and rho <= 0:
        raise ParamError(f"schedule rho must be > 0 (or None for the default); got {rho!r}")
    discard = sampler.discard_next_to_last_sigma or discard_penultimate
    steps = n + 1 if discard else n
    name = _resolved_name(sampler, scheduler)
    model_sigmas = model_sigmas.detach().to(device="cpu", dtype=torch.float32)
    if sampler.lcm:  # the model seen through LCM's 50-step grid (its range; its own "Automatic"/"Uniform")
        check_schedule(sampler, scheduler)
        if name in (None, "uniform"):
            sigmas = lcm.sigmas_lcm(model_sigmas, steps)
            return torch.cat([sigmas[:-2], sigmas[-1:]]) if discard else sigmas
        model_sigmas = lcm.lcm_grid(model_sigmas)
    if name is None:
        sigmas = (sch.sigmas_ddim if sampler.timestep_sampler else sch.sigmas_automatic)(model_sigmas, steps)
    else:
        fn = SCHEDULERS[name][1]
        assert fn is not None
        lo = float(model_sigmas[0]) if sigma_min is None else float(sigma_min)
        hi = float(model_sigmas[-1]) if sigma_max is None else float(sigma_max)
        sigmas = fn(ScheduleArgs(steps, model_sigmas, lo, hi, rho, sdxl, beta_alpha, beta_beta))
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas
