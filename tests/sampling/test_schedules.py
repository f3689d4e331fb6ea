"""Sigma schedules and strength arithmetic against the spec's numbers (§3.1, §3.2, §3.4) and
independent references (numpy float64 log-sigma interpolation, closed forms, diffusers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from retouch.sampling import schedules as sch

MS = sch.model_sigmas(sch.scaled_linear_alphas_cumprod())
LOG_MS = np.log(MS.double().numpy())


def ref_sigma(t) -> np.ndarray:
    """Independent reference: linear interpolation of log sigma at fractional timesteps."""
    return np.exp(np.interp(np.asarray(t, dtype=np.float64), np.arange(1000), LOG_MS))


def test_model_sigmas_match_spec_range():
    assert MS.dtype == torch.float32 and MS.shape == (1000,)
    assert float(MS[0]) == pytest.approx(0.0292, abs=5e-5)
    assert float(MS[-1]) == pytest.approx(14.6146, abs=5e-5)
    assert bool((MS[1:] > MS[:-1]).all())


def test_model_sigmas_match_diffusers_alphas():
    from diffusers import EulerDiscreteScheduler

    sc = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    theirs = sch.model_sigmas(sc.alphas_cumprod)
    torch.testing.assert_close(theirs, MS, rtol=1e-5, atol=0)


def test_sigma_to_t_at_grid_points_and_between():
    ks = torch.tensor([0, 1, 250, 998, 999])
    torch.testing.assert_close(sch.sigma_to_t(MS[ks], MS), ks.float(), atol=2e-3, rtol=0)
    mid = (MS[10] * MS[11]).sqrt()  # geometric mean: halfway in log sigma
    assert float(sch.sigma_to_t(mid, MS)) == pytest.approx(10.5, abs=1e-3)
    assert float(sch.sigma_to_t(torch.tensor(1e-4), MS)) == 0.0
    assert float(sch.sigma_to_t(torch.tensor(100.0), MS)) == 999.0


def test_sigma_to_t_keeps_shape():
    sigma = torch.full((3,), 2.0)
    assert sch.sigma_to_t(sigma, MS).shape == (3,)
    assert sch.sigma_to_t(torch.tensor(2.0), MS).shape == ()


@given(st.floats(min_value=0.0, max_value=999.0))
def test_t_to_sigma_matches_reference_and_inverts(t):
    sigma = sch.t_to_sigma(torch.tensor(t), MS)
    assert float(sigma) == pytest.approx(float(ref_sigma(t)), rel=2e-5)
    assert float(sch.sigma_to_t(sigma, MS)) == pytest.approx(t, abs=2e-2)


@pytest.mark.parametrize("n", [1, 2, 10, 20, 37])
def test_automatic_is_log_sigma_interpolation(n):
    sig = sch.sigmas_automatic(MS, n)
    assert sig.dtype == torch.float32 and sig.shape == (n + 1,) and float(sig[-1]) == 0.0
    np.testing.assert_allclose(sig[:-1].numpy(), ref_sigma(np.linspace(999, 0, n)), rtol=2e-5)
    torch.testing.assert_close(sch.sigmas_uniform(MS, n), sig)
    torch.testing.assert_close(sch.sigmas_normal(MS, n), sig)


def test_karras_closed_form_and_diffusers():
    from diffusers import EulerDiscreteScheduler

    lo, hi = float(MS[0]), float(MS[-1])
    sig = sch.sigmas_karras(20, lo, hi)
    i = np.arange(20)
    expected = (hi ** (1 / 7) + i / 19 * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    np.testing.assert_allclose(sig[:-1].numpy(), expected, rtol=1e-5)
    assert float(sig[-1]) == 0.0 and float(sig[0]) == pytest.approx(hi) and float(sig[-2]) == pytest.approx(lo)
    sc = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", use_karras_sigmas=True
    )
    sc.set_timesteps(20)
    torch.testing.assert_close(sc.sigmas.float(), sig, rtol=1e-5, atol=1e-6)


def test_karras_rho_and_single_step():
    sig = sch.sigmas_karras(5, 0.1, 10.0, rho=1.0)
    np.testing.assert_allclose(sig.numpy(), [10.0, 7.525, 5.05, 2.575, 0.1, 0.0], rtol=1e-6, atol=1e-6)
    assert sch.sigmas_karras(1, 0.1, 10.0).tolist() == [pytest.approx(10.0), 0.0]


def test_exponential_and_polyexponential():
    sig = sch.sigmas_exponential(5, 0.1, 10.0)
    np.testing.assert_allclose(sig.numpy(), [10.0, 10 ** 0.5, 1.0, 10 ** -0.5, 0.1, 0.0], rtol=1e-6)
    torch.testing.assert_close(sch.sigmas_polyexponential(5, 0.1, 10.0), sig)
    poly2 = sch.sigmas_polyexponential(5, 0.1, 10.0, rho=2.0)
    ramp = np.linspace(1, 0, 5) ** 2
    np.testing.assert_allclose(poly2[:-1].numpy(), np.exp(ramp * math.log(100) + math.log(0.1)), rtol=1e-6)


def test_sgm_uniform_drops_the_end_point():
    sig = sch.sigmas_sgm_uniform(MS, 10)
    assert sig.shape == (11,) and float(sig[-1]) == 0.0
    np.testing.assert_allclose(sig[:-1].numpy(), ref_sigma(np.linspace(999, 0, 11)[:-1]), rtol=2e-5)


def test_normal_and_sgm_honour_sigma_range():
    sig = sch.sigmas_normal(MS, 4, sigma_min=1.0, sigma_max=10.0)
    assert float(sig[0]) == pytest.approx(10.0, rel=1e-4) and float(sig[-2]) == pytest.approx(1.0, rel=1e-4)


def test_simple_picks_strided_model_sigmas():
    sig = sch.sigmas_simple(MS, 3)
    expected = [float(MS[-1]), float(MS[-(1 + 333)]), float(MS[-(1 + 666)]), 0.0]
    assert sig.tolist() == pytest.approx(expected)


def test_ddim_grid_matches_timestep_rule():
    """Timesteps 1 + k (1000 // N) below 1000 (spec §3.3), descending; more than N for N = 7."""
    sig = sch.sigmas_ddim(MS, 10)
    assert sig.tolist() == pytest.approx([float(MS[t]) for t in range(901, 0, -100)] + [0.0])
    sig7 = sch.sigmas_ddim(MS, 7)
    assert len(sig7) == 9 and float(sig7[0]) == pytest.approx(float(MS[995]))


def test_kl_optimal_ends_at_sigma_min_like_a1111():
    sig = sch.sigmas_kl_optimal(4, 0.1, 10.0)
    a_lo, a_hi = math.atan(0.1), math.atan(10.0)
    expected = [math.tan(k / 4 * a_lo + (1 - k / 4) * a_hi) for k in range(5)]
    np.testing.assert_allclose(sig.numpy(), expected, rtol=1e-5)


def test_align_your_steps():
    sig = sch.sigmas_align_your_steps(11)
    assert sig.tolist()[:2] == pytest.approx([14.615, 6.475]) and float(sig[-1]) == 0.0 and len(sig) == 12
    sdxl = sch.sigmas_align_your_steps(11, sdxl=True)
    assert float(sdxl[1]) == pytest.approx(6.315)
    sig20 = sch.sigmas_align_your_steps(20)
    assert len(sig20) == 21 and float(sig20[0]) == pytest.approx(14.615) and float(sig20[-2]) == pytest.approx(0.029)
    assert bool((sig20[1:] < sig20[:-1]).all())


def test_beta_ppf_closed_forms():
    for q in (0.0, 0.1, 0.37, 0.5, 0.9, 1.0):
        assert sch.beta_ppf(q, 1.0, 1.0) == pytest.approx(q, abs=1e-12)
        assert sch.beta_ppf(q, 1.0, 2.0) == pytest.approx(1 - math.sqrt(1 - q), abs=1e-12)
        assert sch.beta_ppf(q, 0.5, 0.5) == pytest.approx(math.sin(math.pi * q / 2) ** 2, abs=1e-10)
        assert sch.beta_ppf(q, 0.6, 0.6) == pytest.approx(1 - sch.beta_ppf(1 - q, 0.6, 0.6), abs=1e-10)
    with pytest.raises(ValueError, match="q must be"):
        sch.beta_ppf(1.5, 0.6, 0.6)


def test_beta_schedule():
    sig = sch.sigmas_beta(5, 0.1, 10.0)
    assert float(sig[0]) == pytest.approx(10.0) and float(sig[-2]) == pytest.approx(0.1) and float(sig[-1]) == 0
    assert float(sig[2]) == pytest.approx(0.1 + 0.5 * 9.9, rel=1e-6)  # symmetric Beta: median 0.5
    assert bool((sig[1:] < sig[:-1]).all())


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_schedules_reject_bad_step_counts(bad):
    with pytest.raises(ValueError, match=">= 1"):
        sch.sigmas_karras(bad, 0.1, 10.0)


# Spec §3.2 worked table, S = 20: d -> (t_enc, executed, start index, fix N, fix start index).
TABLE = [
    (0.0, 0, 1, 19, 0, None),
    (0.1, 2, 3, 17, 200, 180),
    (0.25, 5, 6, 14, 80, 60),
    (0.3, 6, 7, 13, 66, 46),
    (0.5, 10, 11, 9, 40, 20),
    (0.75, 15, 16, 4, 26, 6),
    (0.9, 18, 19, 1, 22, 2),
    (1.0, 19, 20, 0, 20, 0),
]


@pytest.mark.parametrize(("d", "t_enc", "executed", "start", "fix_n", "fix_start"), TABLE)
def test_worked_table_default(d, t_enc, executed, start, fix_n, fix_start):
    n, got_t_enc = sch.img2img_steps(20, d, fix_steps=False)
    assert (n, got_t_enc) == (20, t_enc)
    sigmas = sch.sigmas_karras(n, 0.03, 14.6)
    tail = sch.sigma_tail(sigmas, got_t_enc)
    assert len(tail) - 1 == executed
    assert float(tail[0]) == float(sigmas[start]) and float(tail[-1]) == 0.0


@pytest.mark.parametrize(("d", "t_enc", "executed", "start", "fix_n", "fix_start"), TABLE)
def test_worked_table_fix_steps(d, t_enc, executed, start, fix_n, fix_start):
    n, got_t_enc = sch.img2img_steps(20, d, fix_steps=True)
    assert (n, got_t_enc) == (fix_n, 19)
    if fix_start is None:
        with pytest.raises(ValueError, match="t_enc"):
            sch.sigma_tail(torch.zeros(1), got_t_enc)
        return
    sigmas = sch.sigmas_automatic(MS, n)
    tail = sch.sigma_tail(sigmas, got_t_enc)
    assert len(tail) - 1 == 20  # with fix steps always 20 steps run
    assert float(tail[0]) == float(sigmas[fix_start])


def test_float_truncation():
    assert sch.img2img_steps(100, 0.29, False) == (100, 28)  # int(0.29 * 100) = 28
    assert sch.img2img_steps(20, 1.5, False) == (20, 19)  # strength above 1 acts as 0.999


def test_bad_step_arguments():
    with pytest.raises(ValueError, match="steps"):
        sch.img2img_steps(0, 0.5, False)
    with pytest.raises(ValueError, match="strength"):
        sch.img2img_steps(20, -0.1, False)
    with pytest.raises(ValueError, match="t_enc"):
        sch.sigma_tail(sch.sigmas_karras(5, 0.1, 10.0), 5)


def test_sigma_tail_uses_given_step_count():
    sigmas = sch.sigmas_ddim(MS, 7)  # 8 sigmas + 0
    assert float(sch.sigma_tail(sigmas, 2, steps=7)[0]) == float(sigmas[4])
    assert float(sch.sigma_tail(sigmas, 2)[0]) == float(sigmas[5])


@given(st.integers(min_value=1, max_value=150), st.floats(min_value=0.001, max_value=1.0), st.booleans())
def test_tail_invariants(steps, strength, fix):
    n, t_enc = sch.img2img_steps(steps, strength, fix)
    sigmas = sch.sigmas_karras(n, 0.03, 14.6)
    tail = sch.sigma_tail(sigmas, t_enc)
    assert len(tail) == t_enc + 2 and float(tail[-1]) == 0.0
    assert len(tail) - 1 == (steps if fix else t_enc + 1) <= max(steps, 1)
    assert torch.equal(tail, sigmas[len(sigmas) - len(tail) :])
