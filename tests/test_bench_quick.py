"""Smoke test of the benchmark (bench/run.py --quick, tiny models) and its pure helpers.

The quick run asserts that the report is computed (ratios finite and positive, equal UNet work on both
sides, identical weights in every child), never the speed figures themselves.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import scenarios  # noqa: E402


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.mark.parametrize(
    ("steps", "strength", "a1111", "diffusers"),
    [(6, 0.75, 5, 4), (7, 0.75, 6, 5), (20, 0.75, 16, 15), (5, 1.0, 5, 5), (10, 0.5, 6, 5), (4, 0.3, 2, 1)],
)
def test_evaluation_counts_follow_each_library(
    steps: int, strength: float, a1111: int, diffusers: int
) -> None:
    # A1111: int(min(d, 0.999) * S) + 1 (spec §3.1); diffusers: min(int(S * d), S).
    assert scenarios.a1111_evals(steps, strength) == a1111
    assert scenarios.diffusers_evals(steps, strength) == diffusers


def test_equal_work_step_counts() -> None:
    sc = scenarios.scenarios(quick=False)[0]
    assert (sc.retouch_steps, sc.diffusers_steps, sc.evals) == (6, 7, 5)
    for s in scenarios.scenarios(quick=True) + scenarios.scenarios(quick=False, slow=True):
        assert scenarios.a1111_evals(s.retouch_steps, s.strength) == s.evals
        assert scenarios.diffusers_evals(s.diffusers_steps, s.strength) == s.evals
    with pytest.raises(ValueError, match="no step count"):
        scenarios.steps_for(0, 0.75, "a1111")


def test_mask_is_the_requested_square() -> None:
    mask = scenarios.square_mask(1024, 128)
    import numpy as np

    m = np.asarray(mask)
    ys, xs = np.nonzero(m)
    assert m.sum() == 128 * 128 * 255
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (128, 128)


def test_ratio_handles_missing_values() -> None:
    assert report.ratio(3.0, 2.0) == 1.5
    assert math.isnan(report.ratio(1.0, 0.0))
    assert math.isnan(report.ratio(math.nan, 1.0))


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "quick.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.with_suffix(".json").read_text()), out.read_text()


def test_quick_ratios_are_computed(quick: tuple[dict[str, Any], str]) -> None:
    results, _ = quick
    for name in ("img2img", "inpaint", "batch4"):
        vals = results["ratios"][name]["diffusers"]
        for key in ("unet_step_median_s", "vae_encode_s", "vae_decode_s", "e2e_s", "peak_rss_mib"):
            assert _positive(vals[key]), (name, key, vals[key])
    assert _positive(results["ratios"]["img2img"]["diffusers-bf16"]["e2e_s"])
    for name, lim in results["limits"].items():
        assert _positive(lim["gflop_per_call"]) and _positive(lim["x_limit"]), name
    assert _positive(results["quality"]["psnr_db"])
    assert {c["check"] for c in results["checks"]} and all(_positive(c["value"]) for c in results["checks"])


def test_quick_runs_do_equal_work_on_identical_weights(quick: tuple[dict[str, Any], str]) -> None:
    results, _ = quick
    runs = results["runs"]
    for name, by_impl in runs.items():
        calls = {impl: r["unet_calls"] for impl, r in by_impl.items()}
        assert set(calls.values()) == {5}, (name, calls)
    assert runs["batch4"]["retouch"]["images"] == runs["batch4"]["diffusers"]["images"] == 4
    # only-masked work runs at the processing size, whole-picture at the image size (latent /8, CFG batch 2)
    assert runs["inpaint-only-masked"]["retouch"]["unet_input_shapes"] == [[2, 9, 8, 8]]
    assert runs["inpaint-whole-big"]["retouch"]["unet_input_shapes"] == [[2, 9, 16, 16]]
    assert runs["inpaint-only-masked"]["retouch"]["image_size"] == [128, 128]
    assert set(results["fingerprints"]) == {"sd1", "sd1-inpaint"}
    assert all("," not in fp for fp in results["fingerprints"].values())  # one weights hash per family


def test_quick_markdown_has_the_tables(quick: tuple[dict[str, Any], str]) -> None:
    _, text = quick
    for heading in (
        "## Settings",
        "## Measurements",
        "## Ratio Retouch / reference",
        "matmul limit",
        "## Quality",
    ):
        assert heading in text
    assert "| img2img | retouch |" in text and "| img2img | diffusers |" in text
