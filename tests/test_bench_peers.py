"""``bench/peers.py``: equal UNet work on every side, stable-diffusion.cpp's log parsed, ratios as stated.

The step rules are the peers' own: A1111/Retouch run ``int(min(d, 0.999) * S) + 1`` evaluations (spec
§3.1), diffusers ``min(int(S * d), S)`` (``get_timesteps``), stable-diffusion.cpp 0.4.7 ``int(S * d)``
less one when that is every step (``generate_image``: it keeps the last ``t_enc + 1`` sigmas). The log
lines are the format strings of stable-diffusion.cpp 0.4.7 (``LOG_INFO("... completed, taking %.2fs")``),
whose encode and conditioning times both count from the start of the preparation (its log on this machine:
conditioning 0.47 s, encode 30.80 s, so the encode itself took 30.33 s).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
from scenarios import a1111_evals, diffusers_evals, sdcpp_evals, steps_for  # noqa: E402


@pytest.mark.parametrize("evals", range(1, 13))
def test_every_side_runs_the_same_number_of_unet_evaluations(evals: int) -> None:
    a, d, s = (steps_for(evals, peers.STRENGTH, rule) for rule in ("a1111", "diffusers", "sdcpp"))
    assert (a1111_evals(a, 0.5), diffusers_evals(d, 0.5), sdcpp_evals(s, 0.5)) == (evals, evals, evals)


def test_step_rules_differ_where_the_peers_differ() -> None:
    # 10 steps at 0.5: A1111 runs t_enc + 1 = 6, diffusers and stable-diffusion.cpp 5; at strength 1.0
    # diffusers runs all 10 and stable-diffusion.cpp keeps one fewer.
    assert (a1111_evals(10, 0.5), diffusers_evals(10, 0.5), sdcpp_evals(10, 0.5)) == (6, 5, 5)
    assert (diffusers_evals(10, 1.0), sdcpp_evals(10, 1.0)) == (10, 9)
    assert steps_for(6, 0.5, "a1111") == 10 and steps_for(6, 0.5, "sdcpp") == 12


def test_sdcpp_phase_times_come_from_its_log() -> None:
    log = "\n".join([
        "[INFO ] stable-diffusion.cpp:2931 - IMG2IMG",
        "[INFO ] stable-diffusion.cpp:3168 - get_learned_condition completed, taking 0.47s",
        "[INFO ] stable-diffusion.cpp:3106 - encode_first_stage completed, taking 30.80s",
        "[INFO ] stable-diffusion.cpp:3432 - sampling completed, taking 120.50s",
        "[INFO ] stable-diffusion.cpp:3208 - latent 1 decoded, taking 15.00s",
        "[INFO ] stable-diffusion.cpp:3212 - decode_first_stage completed, taking 15.10s",
    ])
    phases = peers._sdcpp_phases(log)
    assert phases == pytest.approx({"vae_encode_s": 30.33, "text_s": 0.47, "sdcpp_sampling_s": 120.5,
                                    "vae_decode_s": 15.1})
    swapped = log.replace("0.47s", "X").replace("30.80s", "0.47s").replace("X", "30.80s")  # encode first
    assert peers._sdcpp_phases(swapped) == pytest.approx({"vae_encode_s": 0.47, "text_s": 30.33,
                                                          "sdcpp_sampling_s": 120.5, "vae_decode_s": 15.1})
    assert peers._sdcpp_phases("no timings here") == {}


def test_report_ratios_and_psnr(tmp_path: Path) -> None:
    ref = np.zeros((8, 8, 3), np.uint8)
    off = ref.copy()
    off[0, 0, 0] = 255  # one channel of one pixel: MSE 255² / 192, so PSNR = 10 log10(192)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    Image.fromarray(off).save(tmp_path / "off.png")
    common = {"dtype": "float32", "load_s": 1.0, "cpu_s": 1.0, "rss_after_imports": 300.0}
    runs = {
        "retouch-fp32": common | {"job_s": 40.0, "peak_rss_mib": 3000.0, "image": str(tmp_path / "ref.png")},
        "retouch-fast": common | {"job_s": 16.0, "peak_rss_mib": 2500.0, "image": str(tmp_path / "off.png"),
                                  "vae_encode_s": 2.0, "vae_decode_s": 3.0, "text_s": 1.0},
        "diffusers": common | {"job_s": 48.0, "peak_rss_mib": 5000.0, "image": str(tmp_path / "ref.png")},
        "sdcpp-f32": {"impl": "sdcpp-f32", "skipped": "not installed"},
    }
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in peers.report(runs, "#").splitlines()
            if line.startswith("| retouch") or line.startswith("| diffusers") or line.startswith("| sdcpp")}
    fast = rows["retouch-fast"]
    assert fast[4] == "3.00"  # 48 / 16: job-time speed-up over diffusers
    assert fast[5] == "10.0"  # 16 - (2 + 3 + 1): UNet and the rest
    assert fast[11] == "0.50"  # 2500 / 5000 MiB
    assert float(fast[12]) == pytest.approx(10 * math.log10(192), abs=0.05)
    assert rows["retouch-fp32"][12] == "inf" and rows["diffusers"][4] == "1.00"
    assert "not installed" in rows["sdcpp-f32"][-1]
