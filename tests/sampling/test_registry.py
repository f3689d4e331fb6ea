"""A1111 sampler and schedule-type names, defaults and schedule building (spec §3.2, §3.4, §6.2)."""

from __future__ import annotations

import pytest
import torch

from retouch.params import ParamError
from retouch.sampling import registry as reg
from retouch.sampling import schedules as sch

MS = sch.model_sigmas(sch.scaled_linear_alphas_cumprod())
LO, HI = float(MS[0]), float(MS[-1])

A1111_ORDER = [
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM",
    "LCM",
]  # fmt: skip


def test_sampler_list_order_and_defaults():
    assert list(reg.SAMPLERS) == A1111_ORDER
    defaults = {name: spec.default_scheduler for name, spec in reg.SAMPLERS.items()}
    for name in ("DPM++ 2M", "DPM++ SDE", "DPM++ 2S a", "DPM2", "DPM2 a", "Restart"):
        assert defaults[name] == "karras"
    for name in ("DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"):
        assert defaults[name] == "exponential"
    for name in ("Euler a", "Euler", "LMS", "Heun", "DPM fast", "DPM adaptive", "DDIM", "LCM"):
        assert defaults[name] is None


def test_sampler_flags():
    second = {n for n, s in reg.SAMPLERS.items() if s.second_order}
    assert second == {"DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart"}
    discard = {n for n, s in reg.SAMPLERS.items() if s.discard_next_to_last_sigma}
    assert discard == {"DPM++ 3M SDE", "DPM2", "DPM2 a"}
    churn = {n for n, s in reg.SAMPLERS.items() if s.uses_churn}
    assert churn == {"Euler", "Heun", "DPM2"}
    assert not reg.SAMPLERS["Euler a"].uses_s_noise and reg.SAMPLERS["Euler a"].uses_eta
    assert reg.SAMPLERS["DDIM"].default_eta == 0.0 and reg.SAMPLERS["Euler a"].default_eta == 1.0


def test_scheduler_names_and_labels():
    assert [label for label, _ in reg.SCHEDULERS.values()] == [
        "Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
        "Align Your Steps", "Simple", "Normal", "DDIM", "Beta",
    ]  # fmt: skip
    assert reg.get_scheduler("karras") == "Karras"
    assert reg.get_scheduler("sgm_uniform") == "SGM Uniform"
    assert reg.get_scheduler("SGMUniform") == "SGM Uniform"
    assert reg.get_scheduler("  kl optimal ") == "KL Optimal"


def test_get_sampler_is_case_insensitive_on_names_and_aliases():
    assert reg.get_sampler("k_euler_a").name == "Euler a"
    assert reg.get_sampler("K_DPMPP_2M").name == "DPM++ 2M"
    assert reg.get_sampler("dpm++ 2m sde heun").name == "DPM++ 2M SDE Heun"
    assert reg.get_sampler("Euler").fn is reg.SAMPLERS["Euler"].fn


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ParamError) as err:
        reg.get_sampler("Eulerr")
    assert "'Eulerr'" in str(err.value) and "DPM++ 2M, DPM++ SDE" in str(err.value) and "DDIM" in str(err.value)
    with pytest.raises(ParamError, match="Karras \\(karras\\)"):
        reg.get_scheduler("Karass")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Exponential")),
        ("Euler a", ("Euler a", None)),
        ("DPM++ 2M SDE", ("DPM++ 2M SDE", None)),
        ("DDIM", ("DDIM", None)),
        ("Euler SGMUniform", ("Euler", "SGM Uniform")),
        ("euler a karras", ("euler a", "Karras")),
    ],
)
def test_split_sampler_name(name, expected):
    assert reg.split_sampler_name(name) == expected


def test_resolved_scheduler_label():
    assert reg.resolved_scheduler_label(reg.SAMPLERS["DPM++ 2M"], "Automatic") == "Karras"
    assert reg.resolved_scheduler_label(reg.SAMPLERS["DPM++ 3M SDE"], "automatic") == "Exponential"
    assert reg.resolved_scheduler_label(reg.SAMPLERS["Euler"], "Automatic") == "Automatic"
    assert reg.resolved_scheduler_label(reg.SAMPLERS["DDIM"], "Automatic") == "Automatic"
    assert reg.resolved_scheduler_label(reg.SAMPLERS["Euler"], "exponential") == "Exponential"


def test_automatic_resolves_to_the_sampler_default():
    n = 20
    torch.testing.assert_close(
        reg.build_sigmas(reg.SAMPLERS["DPM++ 2M"], "Automatic", n, MS), sch.sigmas_karras(n, LO, HI)
    )
    torch.testing.assert_close(
        reg.build_sigmas(reg.SAMPLERS["DPM++ 2M SDE"], "Automatic", n, MS), sch.sigmas_exponential(n, LO, HI)
    )
    torch.testing.assert_close(reg.build_sigmas(reg.SAMPLERS["Euler"], "Automatic", n, MS), sch.sigmas_automatic(MS, n))
    torch.testing.assert_close(reg.build_sigmas(reg.SAMPLERS["DDIM"], "Automatic", n, MS), sch.sigmas_ddim(MS, n))
    torch.testing.assert_close(reg.build_sigmas(reg.SAMPLERS["Euler"], "Karras", n, MS), sch.sigmas_karras(n, LO, HI))


def test_discard_penultimate_sigma():
    sig = reg.build_sigmas(reg.SAMPLERS["DPM2"], "Automatic", 10, MS)
    full = sch.sigmas_karras(11, LO, HI)
    assert sig.shape == (11,)
    torch.testing.assert_close(sig, torch.cat([full[:-2], full[-1:]]))
    forced = reg.build_sigmas(reg.SAMPLERS["Euler"], "Karras", 10, MS, discard_penultimate=True)
    torch.testing.assert_close(forced, sig)


def test_every_schedule_builds_from_the_registry():
    for name, (label, fn) in reg.SCHEDULERS.items():
        sig = reg.build_sigmas(reg.SAMPLERS["Euler"], label, 20, MS)  # 20 divides 1000 (DDIM grid)
        assert sig.dtype == torch.float32 and sig.shape == (21,), name
        assert bool((sig[1:] <= sig[:-1]).all()), name
        assert (fn is None) == (name == "automatic")


def test_overrides():
    spec = reg.SAMPLERS["Euler"]
    sig = reg.build_sigmas(spec, "Karras", 10, MS, sigma_min=0.1, sigma_max=10.0, rho=3.0)
    torch.testing.assert_close(sig, sch.sigmas_karras(10, 0.1, 10.0, 3.0))
    poly = reg.build_sigmas(spec, "Polyexponential", 10, MS, rho=2.0)
    torch.testing.assert_close(poly, sch.sigmas_polyexponential(10, LO, HI, 2.0))
    # Uniform is the model's own discretization and ignores the range, as in A1111
    torch.testing.assert_close(
        reg.build_sigmas(spec, "Uniform", 10, MS, sigma_min=0.1), sch.sigmas_automatic(MS, 10)
    )
    beta = reg.build_sigmas(spec, "Beta", 5, MS, beta_alpha=1.0, beta_beta=1.0)
    torch.testing.assert_close(beta[:-1], torch.linspace(HI, LO, 5), rtol=1e-5, atol=1e-5)
    ays = reg.build_sigmas(spec, "Align Your Steps", 11, MS, sdxl=True)
    assert float(ays[1]) == pytest.approx(6.315)


def test_build_sigmas_rejects_bad_arguments():
    spec = reg.SAMPLERS["Euler"]
    with pytest.raises(ParamError, match="steps"):
        reg.build_sigmas(spec, "Karras", 0, MS)
    with pytest.raises(ParamError, match="rho"):
        reg.build_sigmas(spec, "Karras", 5, MS, rho=0.0)
    with pytest.raises(ParamError, match="schedule type"):
        reg.build_sigmas(spec, "Karass", 5, MS)


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        reg.SAMPLERS["X"] = reg.SAMPLERS["Euler"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        reg.SAMPLERS["Euler"].name = "x"  # type: ignore[misc]
