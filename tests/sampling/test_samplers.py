"""Samplers against analytic denoisers and diffusers schedulers (spec §3.2, §3.4).

Denoisers: a constant one (x0 = c), and the exact denoiser of 1-D Gaussian data N(MU, S²),
``x0 = (S² x + sigma² MU) / (S² + sigma²)``, whose probability-flow ODE maps a start ``x_T`` exactly to
``MU + (x_T - MU) S / sqrt(S² + sigma_max²)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from retouch.sampling import samplers as S
from retouch.sampling import samplers_extra as SX
from retouch.sampling.noise import ImageNoise
from retouch.sampling.registry import SAMPLERS, build_sigmas
from retouch.sampling.schedules import model_sigmas, scaled_linear_alphas_cumprod, sigmas_karras

MS = model_sigmas(scaled_linear_alphas_cumprod())
MU, SD = 0.5, 0.8
SPECS = list(SAMPLERS.values())
ENDS_AT_SIGMA_MIN = {"DPM fast", "DPM adaptive"}  # like k-diffusion, they stop at sigmas[-2]


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype) ** 2
    return (SD**2 * x + s2 * MU) / (SD**2 + s2)


def seeded_noise(seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda like: torch.randn(like.shape, generator=g, dtype=like.dtype)


class Counter:
    """Wraps a denoiser and counts its calls; also checks the k-diffusion call convention."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, sigma):
        assert sigma.shape == (x.shape[0],), "sigma must be a (B,) tensor"
        self.calls += 1
        return self.fn(x, sigma)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_constant_denoiser_lands_on_the_constant(spec):
    c = torch.tensor([[0.25, -1.5, 3.0]]).repeat(2, 1)
    sigmas = sigmas_karras(12, 0.03, 14.6)
    x_t = c + sigmas[0] * torch.randn(c.shape, generator=torch.Generator().manual_seed(0))
    out = spec.fn(lambda x, sigma: c, x_t, sigmas, noise=seeded_noise(1), eta=0.0)
    if spec.name in ENDS_AT_SIGMA_MIN:  # exact ODE solution stopped at sigma_min
        torch.testing.assert_close(out, c + (x_t - c) * sigmas[-2] / sigmas[0], rtol=1e-4, atol=1e-4)
    else:
        torch.testing.assert_close(out, c, rtol=0, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_constant_denoiser_with_default_eta(spec):
    if spec.name in ENDS_AT_SIGMA_MIN:
        pytest.skip("ends at sigma_min with ancestral noise")
    c = torch.full((2, 3), 0.7)
    sigmas = sigmas_karras(8, 0.03, 14.6)
    out = spec.fn(lambda x, sigma: c, c + 14.6 * torch.ones(2, 3), sigmas, noise=seeded_noise(1))
    torch.testing.assert_close(out, c, rtol=0, atol=1e-5)


DETERMINISTIC = {  # name -> max per-sample error vs the exact ODE map at 40 steps (its default schedule)
    "DPM++ 2M": 0.015,
    "Euler": 0.15,
    "LMS": 1e-3,
    "Heun": 5e-3,
    "DPM2": 5e-3,
    "DDIM": 0.15,
}


def ode_run(name: str, n: int, dtype=torch.float64) -> float:
    spec = SAMPLERS[name]
    sigmas = build_sigmas(spec, "Automatic", n, MS).to(dtype)
    x_t = MU + torch.randn(256, 1, generator=torch.Generator().manual_seed(0), dtype=dtype) * (
        SD**2 + sigmas[0] ** 2
    ) ** 0.5
    exact = MU + (x_t - MU) * SD / (SD**2 + sigmas[0] ** 2) ** 0.5
    out = spec.fn(gaussian_denoiser, x_t, sigmas, noise=torch.zeros_like, eta=0.0)
    return float((out - exact).abs().max())


@pytest.mark.parametrize(("name", "tol"), DETERMINISTIC.items())
def test_ode_samplers_follow_the_exact_flow(name, tol):
    assert ode_run(name, 40) < tol


@pytest.mark.parametrize(("name", "order"), [("Euler", 1), ("DDIM", 1), ("Heun", 2), ("DPM2", 2), ("DPM++ 2M", 2)])
def test_convergence_order(name, order):
    ratio = ode_run(name, 10) / ode_run(name, 20)
    assert ratio > 2 ** order * 0.85, f"error ratio {ratio:.2f} for a method of order {order}"


def test_dpm_solvers_stop_at_sigma_min_on_the_exact_flow():
    for name, n, tol in (("DPM fast", 40, 1e-3), ("DPM adaptive", 10, 0.15)):
        sigmas = build_sigmas(SAMPLERS[name], "Automatic", n, MS).double()
        x_t = MU + torch.randn(256, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 15
        s_min = sigmas[-2]
        exact = MU + (x_t - MU) * (SD**2 + s_min**2) ** 0.5 / (SD**2 + sigmas[0] ** 2) ** 0.5
        out = SAMPLERS[name].fn(gaussian_denoiser, x_t, sigmas, noise=torch.zeros_like, eta=0.0)
        assert float((out - exact).abs().max()) < tol, name


STOCHASTIC = {  # name -> steps: sample mean and std of N(MU, SD²) data within tolerance
    "Euler a": 200,
    "DPM2 a": 50,
    "DPM++ 2S a": 50,
    "DPM++ SDE": 50,
    "DPM++ 2M SDE": 50,
    "DPM++ 2M SDE Heun": 50,
    "DPM++ 3M SDE": 50,
    "DPM fast": 50,
    "DPM adaptive": 20,
    "Restart": 40,
}


@pytest.mark.parametrize(("name", "n"), STOCHASTIC.items())
def test_stochastic_samplers_reproduce_the_data_distribution(name, n):
    spec = SAMPLERS[name]
    sigmas = build_sigmas(spec, "Automatic", n, MS)
    x_t = MU + torch.randn(8192, 2, generator=torch.Generator().manual_seed(0)) * (SD**2 + sigmas[0] ** 2) ** 0.5
    out = spec.fn(gaussian_denoiser, x_t, sigmas, noise=seeded_noise(1), eta=1.0)
    assert float(out.mean()) == pytest.approx(MU, abs=0.02)
    tol = 0.05 if name == "Euler a" else 0.025  # first order: slower convergence
    assert float(out.std()) == pytest.approx(SD, rel=tol)


def expected_calls(name: str, n: int) -> int:
    spec = SAMPLERS[name]
    return 2 * n - 1 if spec.second_order else n


@pytest.mark.parametrize("spec", [s for s in SPECS if s.name != "DPM adaptive"], ids=lambda s: s.name)
@pytest.mark.parametrize("n", [1, 6, 24])
def test_denoiser_evaluations_and_callbacks(spec, n):
    sigmas = sigmas_karras(n, 0.03, 14.6)
    den = Counter(gaussian_denoiser)
    steps: list[S.SamplerStep] = []
    spec.fn(den, torch.ones(2, 3) * 14.6, sigmas, noise=seeded_noise(0), callback=steps.append)
    assert den.calls == expected_calls(spec.name, n)
    expected_steps = n if spec.name != "DPM fast" else len(steps)
    assert [s.i for s in steps] == list(range(expected_steps))
    if spec.name not in ("Restart", "DPM fast"):
        assert [s.sigma for s in steps] == pytest.approx(sigmas[:-1].tolist())
    assert all(isinstance(s.sigma, float) and s.denoised.shape == (2, 3) for s in steps)


@pytest.mark.parametrize(
    ("fn", "n", "draws"),
    [
        (S.sample_euler, 5, 0),
        (S.sample_euler_ancestral, 5, 4),
        (S.sample_dpm_2_ancestral, 5, 4),
        (S.sample_dpmpp_2s_ancestral, 5, 4),
        (S.sample_dpmpp_sde, 5, 8),
        (S.sample_dpmpp_2m_sde, 5, 4),
        (S.sample_dpmpp_3m_sde, 5, 4),
        (SX.sample_ddim, 5, 0),
        (SX.sample_dpm_fast, 6, 3),
    ],
)
def test_noise_draw_counts(fn, n, draws):
    """Draws happen where k-diffusion draws (none on the step to sigma 0), keeping streams aligned."""
    count = [0]

    def noise(like):
        count[0] += 1
        return torch.zeros_like(like)

    fn(gaussian_denoiser, torch.ones(1, 2), sigmas_karras(n, 0.03, 14.6), noise=noise)
    assert count[0] == draws


def test_churn_draws_every_step_and_changes_the_result():
    sigmas = sigmas_karras(6, 0.03, 14.6)
    x = torch.ones(1, 2) * 14.6
    count = [0]

    def noise(like):
        count[0] += 1
        return torch.ones_like(like)

    plain = S.sample_euler(gaussian_denoiser, x, sigmas, noise=noise)
    churned = S.sample_euler(gaussian_denoiser, x, sigmas, noise=noise, s_churn=1.0, s_tmin=0.5)
    assert count[0] == 6 and not torch.allclose(plain, churned)


def test_ancestral_step_formula():
    sigma, nxt = torch.tensor(2.0), torch.tensor(1.0)
    down, up = S.ancestral_step(sigma, nxt, 1.0)
    assert float(up) == pytest.approx(math.sqrt(1 * (4 - 1) / 4))
    assert float(down) ** 2 + float(up) ** 2 == pytest.approx(1.0)
    assert S.ancestral_step(sigma, nxt, 0.0) == (nxt, 0.0)
    assert float(S.ancestral_step(sigma, nxt, 5.0)[1]) == 1.0  # clamped at sigma_next


def test_ddim_equals_euler_and_euler_ancestral():
    sigmas = sigmas_karras(10, 0.03, 14.6)
    x = MU + 14.6 * torch.randn(64, 1, generator=torch.Generator().manual_seed(3))
    euler = S.sample_euler(gaussian_denoiser, x, sigmas, noise=seeded_noise(0))
    torch.testing.assert_close(SX.sample_ddim(gaussian_denoiser, x, sigmas, noise=seeded_noise(0)), euler)
    ddim_1 = SX.sample_ddim(gaussian_denoiser, x, sigmas, noise=seeded_noise(5), eta=1.0)
    ancestral = S.sample_euler_ancestral(gaussian_denoiser, x, sigmas, noise=seeded_noise(5))
    torch.testing.assert_close(ddim_1, ancestral)


def test_dpmpp_2m_sde_without_noise_is_dpmpp_2m():
    sigmas = sigmas_karras(10, 0.03, 14.6)
    x = MU + 14.6 * torch.randn(64, 1, generator=torch.Generator().manual_seed(3))
    two_m = S.sample_dpmpp_2m(gaussian_denoiser, x, sigmas, noise=seeded_noise(0))
    torch.testing.assert_close(S.sample_dpmpp_2m_sde(gaussian_denoiser, x, sigmas, noise=seeded_noise(0), eta=0.0), two_m)


def test_lms_coefficients_integrate_constants_exactly():
    import numpy as np

    t = np.array([14.6, 9.0, 5.0, 2.5, 1.0, 0.0])
    for i in range(5):
        order = min(i + 1, 4)
        total = sum(S._lms_coeff(order, t, i, j) for j in range(order))
        assert total == pytest.approx(t[i + 1] - t[i], rel=1e-12)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.name != "DPM adaptive"], ids=lambda s: s.name)
def test_batch_equals_singles_with_per_image_noise(spec):
    sigmas = sigmas_karras(6, 0.03, 14.6)
    shape = (1, 3, 2)
    start = ImageNoise([7, 8], [0, 0], 0.0, shape).first() * sigmas[0]
    batch_noise = ImageNoise([7, 8], [0, 0], 0.0, shape)
    batch_noise.first()
    batch = spec.fn(gaussian_denoiser, start, sigmas, noise=batch_noise.next)
    for k, seed in enumerate((7, 8)):
        single_noise = ImageNoise([seed], [0], 0.0, shape)
        single_noise.first()
        single = spec.fn(gaussian_denoiser, start[k : k + 1], sigmas, noise=single_noise.next)
        torch.testing.assert_close(batch[k : k + 1], single, rtol=1e-5, atol=1e-6)


def test_samplers_reject_bad_schedules():
    with pytest.raises(ValueError, match="1-D"):
        S.sample_euler(gaussian_denoiser, torch.ones(1, 2), torch.ones(2, 2), noise=torch.randn_like)
    with pytest.raises(ValueError, match="solver_type"):
        S.sample_dpmpp_2m_sde(
            gaussian_denoiser, torch.ones(1, 2), sigmas_karras(2, 0.1, 1), noise=torch.randn_like, solver_type="x"
        )


# --- against diffusers, where the conventions coincide -------------------------------------------------

CFG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def diffusers_ve_loop(scheduler, x, *, vp: bool = False, generator=None):
    """Run a diffusers scheduler with eps = (x - D(x, sigma)) / sigma of the Gaussian denoiser."""
    kwargs = {} if generator is None else {"generator": generator}
    for t in scheduler.timesteps:
        scheduler.scale_model_input(x, t)
        sigma = scheduler.sigmas[scheduler.step_index or 0]
        x_ve = x * (sigma**2 + 1) ** 0.5 if vp else x
        eps = (x_ve - gaussian_denoiser(x_ve, sigma * torch.ones(x.shape[0]))) / sigma
        x = scheduler.step(eps, t, x, **kwargs).prev_sample
    return x


def start_sample(sigma_max):
    return MU + sigma_max * torch.randn(16, 4, generator=torch.Generator().manual_seed(11))


def test_euler_matches_diffusers():
    from diffusers import EulerDiscreteScheduler

    sc = EulerDiscreteScheduler(**CFG, use_karras_sigmas=True)
    sc.set_timesteps(12)
    sigmas = sc.sigmas.clone()
    x = start_sample(sigmas[0])
    ours = S.sample_euler(gaussian_denoiser, x, sigmas, noise=torch.randn_like)
    torch.testing.assert_close(ours, diffusers_ve_loop(sc, x), rtol=1e-5, atol=1e-5)


def test_euler_ancestral_matches_diffusers_with_the_same_noise():
    from diffusers import EulerAncestralDiscreteScheduler

    sc = EulerAncestralDiscreteScheduler(**CFG)
    sc.set_timesteps(12)
    sigmas = sc.sigmas.clone()
    x = start_sample(sigmas[0])
    theirs = diffusers_ve_loop(sc, x, generator=torch.Generator().manual_seed(4))
    ours = S.sample_euler_ancestral(gaussian_denoiser, x, sigmas, noise=seeded_noise(4))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_heun_matches_diffusers():
    from diffusers import HeunDiscreteScheduler

    sc = HeunDiscreteScheduler(**CFG, use_karras_sigmas=True)
    sc.set_timesteps(12)
    sigmas = torch.cat([sc.sigmas[:1], sc.sigmas[1:-1:2], sc.sigmas[-1:]])  # diffusers interleaves
    x = start_sample(sigmas[0])
    den = Counter(gaussian_denoiser)
    ours = S.sample_heun(den, x, sigmas, noise=torch.randn_like)
    assert den.calls == len(sc.timesteps) == 23
    torch.testing.assert_close(ours, diffusers_ve_loop(sc, x), rtol=1e-5, atol=1e-5)


def test_dpmpp_2m_matches_diffusers():
    from diffusers import DPMSolverMultistepScheduler

    sc = DPMSolverMultistepScheduler(
        **CFG, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True, final_sigmas_type="zero"
    )
    sc.set_timesteps(12)
    sigmas = sc.sigmas.clone()
    torch.testing.assert_close(sigmas, build_sigmas(SAMPLERS["DPM++ 2M"], "Automatic", 12, MS), rtol=1e-5, atol=1e-6)
    x = start_sample(sigmas[0])
    theirs = diffusers_ve_loop(sc, x / (sigmas[0] ** 2 + 1) ** 0.5, vp=True)
    ours = S.sample_dpmpp_2m(gaussian_denoiser, x, sigmas, noise=torch.randn_like)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
