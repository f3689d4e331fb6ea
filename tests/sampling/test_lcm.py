"""A1111's LCM sampler (issue #17 item 1): grid, timestep rule, boundary scalings, schedule, the step.

Expected values are derived by hand from A1111 v1.10 ``modules/sd_samplers_lcm.py`` as described in
:mod:`retouch.sampling.lcm` (grid = timesteps 19 + 20k, nearest-in-log timestep, sigma_data 0.5 with the
timestep scaled by 10, "Automatic" = linspace(999, 19, n) over the grid), recomputed here in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from retouch import Engine, Img2Img
from retouch.params import ParamError
from retouch.sampling.denoisers import LCMDenoiser
from retouch.sampling.lcm import lcm_boundary, lcm_grid, lcm_timestep, sample_lcm, sigmas_lcm
from retouch.sampling.registry import SAMPLERS, build_sigmas, get_sampler
from retouch.sampling.schedules import model_sigmas, scaled_linear_alphas_cumprod
from retouch.testing import tiny_model

SIGMAS = model_sigmas(scaled_linear_alphas_cumprod()).float()


def _np_sigmas() -> np.ndarray:
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    ac = np.cumprod(1 - betas)
    return ((1 - ac) / ac) ** 0.5


def test_grid_is_every_twentieth_timestep_from_19() -> None:
    grid = lcm_grid(SIGMAS)
    assert grid.shape == (50,)
    assert torch.equal(grid, SIGMAS[[19 + 20 * k for k in range(50)]])
    assert float(grid[-1]) == pytest.approx(14.6146, abs=1e-3)  # SD's sigma_max, timestep 999


def test_timestep_is_the_nearest_grid_entry_in_log_sigma() -> None:
    grid = lcm_grid(SIGMAS)
    assert lcm_timestep(grid, SIGMAS).tolist() == [19.0 + 20 * k for k in range(50)]
    # between entries 10 and 11 (timesteps 219, 239): the geometric midpoint splits them
    lo, hi = float(grid[10]), float(grid[11])
    mid = math.sqrt(lo * hi)
    t = lcm_timestep(torch.tensor([mid * 0.999, mid * 1.001, 100.0, 1e-4]), SIGMAS)
    assert t.tolist() == [219.0, 239.0, 999.0, 19.0]


def test_automatic_schedule_matches_the_hand_formula() -> None:
    ref = _np_sigmas()
    grid = np.log(ref[19::20])
    for n in (1, 4, 8):
        t = np.linspace(999, 19, n)
        frac = np.clip((t - 19) / 20, 0, 49)
        lo, hi = np.floor(frac).astype(int), np.ceil(frac).astype(int)
        w = frac - lo
        want = np.append(np.exp((1 - w) * grid[lo] + w * grid[hi]), 0.0)
        got = sigmas_lcm(SIGMAS, n).double().numpy()
        np.testing.assert_allclose(got, want, rtol=2e-6)
    lcm = get_sampler("LCM")
    assert torch.equal(build_sigmas(lcm, "Automatic", 4, SIGMAS), sigmas_lcm(SIGMAS, 4))
    assert torch.equal(build_sigmas(lcm, "Uniform", 4, SIGMAS), sigmas_lcm(SIGMAS, 4))  # A1111: get_sigmas(n)


def test_range_schedules_use_the_grid_range_and_model_table_schedules_are_refused() -> None:
    lcm = get_sampler("k_lcm")
    karras = build_sigmas(lcm, "Karras", 5, SIGMAS)
    assert float(karras[0]) == pytest.approx(float(SIGMAS[999]), rel=1e-6)
    assert float(karras[-2]) == pytest.approx(float(SIGMAS[19]), rel=1e-5)  # not the model's sigma_min
    with pytest.raises(ParamError, match="'DDIM' is not available with the LCM sampler.*allowed: Automatic"):
        build_sigmas(lcm, "DDIM", 5, SIGMAS)
    assert list(SAMPLERS)[-1] == "LCM"  # A1111 lists it last


def test_boundary_scalings() -> None:
    x0, x = torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), 5.0)
    for t in (19.0, 999.0):
        st = 10 * t
        c_skip, c_out = 0.25 / (st**2 + 0.25), st / math.sqrt(st**2 + 0.25)
        got = float(lcm_boundary(torch.tensor([t]), x0, x))
        assert got == pytest.approx(c_out * 2.0 + c_skip * 5.0, rel=1e-6)


def test_denoiser_calls_the_unet_at_grid_timesteps_and_scales_its_x0() -> None:
    seen: list[torch.Tensor] = []

    def unet(x_in: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        seen.append(t.clone())
        return torch.ones_like(x_in)  # eps = 1

    den = LCMDenoiser(unet, SIGMAS, "epsilon")
    x = torch.full((2, 4, 2, 2), 3.0)
    sigma = torch.tensor([float(SIGMAS[500]), float(SIGMAS[30])])
    out = den(x, sigma, None)  # type: ignore[arg-type]
    t = seen[0]
    assert t.tolist() == [499.0, 39.0]  # nearest grid entries of timesteps 500 and 30
    for i in range(2):
        st = 10 * float(t[i])
        s = float(sigma[i])
        want = st / math.sqrt(st**2 + 0.25) * (3.0 - s) + 0.25 / (st**2 + 0.25) * 3.0
        assert float(out[i, 0, 0, 0]) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="epsilon-prediction"):
        LCMDenoiser(unet, SIGMAS, "v_prediction")


def test_step_jumps_to_x0_and_renoises_to_the_next_sigma() -> None:
    sigmas = torch.tensor([4.0, 2.0, 0.5, 0.0])
    draws: list[int] = []

    def noise(like: torch.Tensor) -> torch.Tensor:
        draws.append(1)
        return torch.full_like(like, 0.5)

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x * 0 + 1.0 + float(sigma[0])  # x0 depends on sigma only

    out = sample_lcm(denoiser, torch.zeros(1, 1, 1, 1), sigmas, noise=noise)
    assert float(out) == 1.0 + 0.5  # the last x0 (at sigma 0.5), not re-noised at sigma 0
    assert len(draws) == 2


def test_engine_runs_lcm_and_writes_it_in_the_infotext() -> None:
    image = Image.new("RGB", (64, 64), (120, 80, 40))
    job = Img2Img(prompt="a cat", init_images=[image], width=64, height=64, steps=4, sampler_name="LCM",
                  seed=3, denoising_strength=0.75, cfg_scale=1.5)
    engine = Engine(tiny_model(), precision="fp32")
    a, b = engine.run(job), engine.run(job)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert "Sampler: LCM" in a.infotexts[0] and "Steps: 4" in a.infotexts[0]
    with pytest.raises(ParamError, match="epsilon-prediction model"):
        Engine(tiny_model(family="sd2-v"), precision="fp32").run(job)
    with pytest.raises(ParamError, match="not available with the LCM sampler"):
        engine.run(job.replace(scheduler="Normal"))
