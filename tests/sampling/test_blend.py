"""Mask blend strategies (spec soft-masks.md §1.4, §2, §5.1; T1, T2, T7, C1-C5, C9-C15, C23).

Expected values are the spec's §6 numbers (computed there with numpy float64 from A1111's, ComfyUI's,
the paper's and InvokeAI's formulas) or the closed formulas themselves.
"""

from __future__ import annotations

import math

import pytest
import torch

from retouch.params import DifferentialDiffusion, SoftInpainting
from retouch.sampling.blend import (
    DifferentialBlend,
    LinearBlend,
    SoftInpaintBlend,
    dd_mask,
    dd_threshold,
    magnitude_blend,
    soft_weight,
)
from retouch.sampling.registry import build_sigmas, get_sampler
from retouch.sampling.schedules import sigma_tail

TAIL = (4.8557, 3.8654, 3.1238, 2.5572, 2.1157, 1.7648, 1.4806, 1.2458, 1.0481, 0.8784, 0.7297, 0.5964,
        0.4736, 0.3555, 0.2322, 0.0292)


def _model_sigmas() -> torch.Tensor:
    """SD1/SD2/SDXL table: scaled-linear betas 0.00085-0.012, 1000 steps (σ_min 0.0291672)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas = torch.cumprod(1 - betas, 0)
    return ((1 - alphas) / alphas) ** 0.5


def _w(n: float, sigma: float, power: float = 1, scale: float = 0.5) -> float:
    return float(soft_weight(torch.tensor([n], dtype=torch.float64), sigma, power, scale)[0])


def test_soft_weight_matches_formula_t1() -> None:
    """T1: n ** (σ ** power * scale) in fp32 within 1e-6 over the §1.4 tail, n, power and scale grids."""
    for n in (0, 0.1, 0.25, 0.5, 0.9, 1):
        for sigma in TAIL:
            for power in (0, 1, 2):
                for scale in (0, 0.5):
                    got = float(soft_weight(torch.tensor([n], dtype=torch.float32), sigma, power, scale)[0])
                    want = math.pow(n, sigma**power * scale)
                    assert got == pytest.approx(want, abs=1e-6)


def test_soft_weight_values_c1_to_c4() -> None:
    """C1 (n .5), C2 (n .25) at σ 14.6146/5/1/0.5/0.1/0.0292; C3 edges (pow(0, 0) = 1); C4 A1111's DDIM
    path with timestep 951 as σ (float64)."""
    sigmas = (14.6146, 5, 1, 0.5, 0.1, 0.0292)
    c1 = (0.006314, 0.176777, 0.707107, 0.840896, 0.965936, 0.989931)
    c2 = (4e-05, 0.03125, 0.5, 0.707107, 0.933033, 0.979964)
    assert [_w(0.5, s) for s in sigmas] == pytest.approx(c1, abs=1e-6)
    assert [_w(0.25, s) for s in sigmas] == pytest.approx(c2, abs=1e-6)
    assert (_w(0, 3), _w(1, 3), _w(0, 3, scale=0)) == (0.0, 1.0, 1.0)
    assert _w(0.5, 14.6, power=0) == pytest.approx(0.707107, abs=1e-6)
    assert _w(0.5, 2, power=2) == pytest.approx(0.25, abs=1e-12)
    assert _w(0.99, 951) == pytest.approx(0.008405, abs=1e-6)
    assert _w(0.5, 951) == pytest.approx(7.2e-144, rel=0.01)


def _vec(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32).reshape(1, 4, 1, 1)


def _blend(a: torch.Tensor, b: torch.Tensor, t: float, p: float = 4) -> list[float]:
    return magnitude_blend(a, b, torch.full((1, 4, 1, 1), t), p).flatten().tolist()


def test_magnitude_blend_t2_c5_c23() -> None:
    """T2/C5: direction from the linear blend, length from the p-power mean, / (|v| + 1e-5); C23: t = 0
    returns a * 1/(1 + 1e-5), not a."""
    assert _blend(_vec(1, 0, 0, 0), _vec(0, 1, 0, 0), 0.5) == pytest.approx([0.707097, 0.707097, 0, 0], abs=1e-5)
    assert _blend(_vec(2, 0, 0, 0), _vec(0, 1, 0, 0), 0.5)[:2] == pytest.approx([1.527200, 0.763600], abs=1e-5)
    assert _blend(_vec(2, 0, 0, 0), _vec(0, 1, 0, 0), 0.5, 1)[:2] == pytest.approx([1.341629, 0.670814], abs=1e-5)
    assert _blend(_vec(1, 0, 0, 0), _vec(-1, 0, 0, 0), 0.5) == [0, 0, 0, 0]
    out = _blend(_vec(3, 4, 0, 0), _vec(0, 0, 0, 0), 0.25)
    assert out[:2] == pytest.approx([2.791807, 3.722410], abs=1e-5)
    assert math.hypot(*out[:2]) == pytest.approx(4.653012, abs=1e-5)
    a = _vec(0.6, 0.8, 0, 0)
    shrunk = _blend(a, _vec(5, 5, 5, 5), 0.0)
    assert shrunk == pytest.approx([0.6 / (1 + 1e-5), 0.8 / (1 + 1e-5), 0, 0], abs=1e-7)
    assert shrunk[0] != pytest.approx(0.6, abs=1e-7)


def test_soft_blend_uses_first_sigma_and_skips_final() -> None:
    """SoftInpaintBlend.step = magnitude_blend(init, x0, nmask ** (σ[0] * 0.5)); final is identity."""
    init, x0 = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    nmask = torch.full((2, 4, 3, 3), 0.5)
    blend = SoftInpaintBlend(init, nmask, SoftInpainting())
    got = blend.step(x0, torch.tensor([1.0, 9.0]), 0)
    want = magnitude_blend(init, x0, torch.full_like(nmask, 0.5**0.5), 4)
    assert torch.allclose(got, want, atol=1e-7)
    assert blend.final(x0) is x0
    linear = LinearBlend(init, nmask)
    assert torch.equal(linear.final(x0), x0 * nmask + init * 0.5)


def _tail(sampler: str, scheduler: str, steps: int, strength: float) -> torch.Tensor:
    from retouch.sampling.registry import get_scheduler
    from retouch.sampling.schedules import img2img_steps

    n, t_enc = img2img_steps(steps, strength, False)
    sigmas = build_sigmas(get_sampler(sampler), get_scheduler(scheduler), n, _model_sigmas().float())
    return sigma_tail(sigmas, t_enc).to(torch.float64)


def _thresholds(tail: torch.Tensor, options: DifferentialDiffusion, start: int = 0, total: int = 20) -> list[float]:
    return [dd_threshold(float(s), tail, _model_sigmas(), start, total, options) for s in tail[:-1]]


def test_comfy_thresholds_c9_c10_c11() -> None:
    """T7/C9-C11: ComfyUI's (ts(σ) - ts(σ_min)) / (ts(σ_from) - ts(σ_min)) per step for Euler/Automatic
    20 steps denoise 1, A1111's 11-step tail for strength 0.5, and Karras 20."""
    dd = DifferentialDiffusion()
    c9 = [1.0, 0.9469, 0.8949, 0.8418, 0.7898, 0.7367, 0.6847, 0.6316, 0.5786, 0.5265, 0.4735, 0.4214,
          0.3684, 0.3153, 0.2633, 0.2102, 0.1582, 0.1051, 0.0531, 0.0]
    assert _thresholds(_tail("Euler", "Automatic", 20, 1.0), dd) == pytest.approx(c9, abs=5e-5)
    c10 = [1.0, 0.8992, 0.8004, 0.6996, 0.5989, 0.5, 0.3992, 0.3004, 0.1996, 0.1008, 0.0]
    assert _thresholds(_tail("Euler", "Automatic", 20, 0.5), dd) == pytest.approx(c10, abs=5e-5)
    c11 = [1.0, 0.963, 0.9219, 0.8769, 0.8278, 0.7728, 0.7107, 0.6406, 0.5616, 0.4745, 0.3804, 0.2853,
           0.1972, 0.1231, 0.0691, 0.035, 0.015, 0.006, 0.002, 0.0]
    assert _thresholds(_tail("Euler", "Karras", 20, 1.0), dd) == pytest.approx(c11, abs=5e-4)


def _m(d: float, thr: float, **kw: object) -> float:
    return float(dd_mask(torch.tensor([d], dtype=torch.float64), thr, DifferentialDiffusion(**kw))[0])  # type: ignore[arg-type]


def test_gate_strength_and_mask_zero_c12_c13() -> None:
    """C12: (.5, .6) -> 0; (.5, .4) -> 1; s .5 -> 0.25; s 0 -> 0.5 (ComfyUI's falsy 0 would give 0);
    (.3, .6, s .25) -> 0.225. C13: threshold 0 never releases mask 0 (ComfyUI does)."""
    assert (_m(0.5, 0.6), _m(0.5, 0.4)) == (0.0, 1.0)
    assert _m(0.5, 0.6, strength=0.5) == pytest.approx(0.25)
    assert _m(0.5, 0.6, strength=0.0) == pytest.approx(0.5)
    assert _m(0.3, 0.6, strength=0.25) == pytest.approx(0.225)
    assert _m(0.0, 0.0) == 0.0 and _m(1e-3, 0.0) == 1.0


def test_paper_step_gate_c14() -> None:
    """C14: the paper's code, T = 20: free steps among i = 1..19 for keep m = 0, .25, .5, .51, .95, 1 are
    19, 15, 10, 9, 1, 0 (d = 1 - m, thresholds 1 - i/T)."""
    tail = _tail("Euler", "Automatic", 20, 1.0)
    thr = _thresholds(tail, DifferentialDiffusion(thresholds="step"))
    assert thr == pytest.approx([1 - i / 20 for i in range(20)], abs=1e-12)
    counts = [sum(_m(1 - m, thr[i], thresholds="step") for i in range(1, 20)) for m in (0, 0.25, 0.5, 0.51, 0.95, 1)]
    assert counts == [19, 15, 10, 9, 1, 0]


def test_invokeai_absolute_gate_c15() -> None:
    """C15: InvokeAI frees a pixel when keep < 1 - t/1000: (.49, 500) free; (.5, 500) not; (0, 999) free;
    (.31, 700) not. (.3, 700) is the exact boundary, like (.5, 500): InvokeAI frees it only because
    1 - 0.7 rounds to 0.30000000000000004 in float64; Retouch's ``d > t/1000`` keeps it (deviation)."""
    cases = ((0.49, 500, 1.0), (0.5, 500, 0.0), (0.0, 999, 1.0), (0.31, 700, 0.0), (0.3, 700, 0.0))
    for keep, t, free in cases:
        assert _m(1 - keep, t / 1000, reference="absolute") == free
    assert 0.3 < 1 - 700 / 1000  # InvokeAI's float64 quirk at that boundary


def test_absolute_timestep_threshold_is_ts_over_1000() -> None:
    """timestep/absolute: thr = nearest integer timestep / 1000; 20-step Euler starts at ts 999."""
    tail = _tail("Euler", "Automatic", 20, 1.0)
    thr = _thresholds(tail, DifferentialDiffusion(reference="absolute"))
    assert thr[0] == pytest.approx(0.999) and thr[-1] == pytest.approx(0.0)
    half = _tail("Euler", "Automatic", 20, 0.5)
    assert _thresholds(half, DifferentialDiffusion(reference="absolute"))[0] == pytest.approx(0.526)


def test_differential_blend_pins_and_final() -> None:
    """DifferentialBlend.step pins unreleased pixels to init; final restores init exactly where d == 0."""
    init = torch.zeros(1, 4, 1, 3)
    d = torch.tensor([0.0, 0.5, 1.0]).reshape(1, 1, 1, 3).expand(1, 4, 1, 3)
    tail = _tail("Euler", "Automatic", 20, 1.0)
    blend = DifferentialBlend(init, d, DifferentialDiffusion(), tail, _model_sigmas(), 0, 20)
    x0 = torch.ones(1, 4, 1, 3)
    first = blend.step(x0, tail[:1].float(), 0)[0, 0, 0].tolist()
    assert first == [0.0, 0.0, 1.0]
    assert blend.step(x0, tail[10:11].float(), 10)[0, 0, 0].tolist() == [0.0, 1.0, 1.0]
    assert blend.final(torch.full((1, 4, 1, 3), 7.0))[0, 0, 0].tolist() == [0.0, 7.0, 7.0]
