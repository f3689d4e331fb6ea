"""Soft inpainting's difference composite (spec soft-masks.md §1.6; T3-T5, C6-C8b).

Expected values are the spec's §6 numbers, computed there from A1111's formulas in float64 numpy;
the reference filter below is a plain per-pixel restatement of A1111's loop (clipped windows, sort,
stacked weights, widened window, overlap-weighted mean) that the vectorised version must match.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from retouch.imaging.soft import (
    difference_opacity,
    gaussian_kernel,
    soft_composite_mask,
    weighted_histogram_filter,
)
from retouch.params import SoftInpainting


def _reference_filter(img: np.ndarray, kernel: np.ndarray, pmin: float, pmax: float, min_width: float = 1.0):
    h, w = img.shape
    r = kernel.shape[0] // 2
    out = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            cells = sorted(
                (float(img[yy, xx]), float(kernel[yy - y + r, xx - x + r]))
                for yy in range(max(0, y - r), min(h, y + r + 1))
                for xx in range(max(0, x - r), min(w, x + r + 1))
            )
            total = sum(wt for _, wt in cells)
            lo, hi = total * pmin, total * pmax
            if hi - lo < min_width:
                c = (lo + hi) / 2
                lo, hi = c - min_width / 2, c + min_width / 2
                if hi > total:
                    lo, hi = total - min_width, total
                if lo < 0:
                    lo, hi = 0.0, min_width
            acc = acc_w = start = 0.0
            for value, wt in cells:
                ov = max(0.0, min(hi, start + wt) - max(lo, start))
                acc, acc_w, start = acc + value * ov, acc_w + ov, start + wt
            out[y, x] = acc / acc_w if acc_w else 0.0
    return out


def _both(img: np.ndarray) -> np.ndarray:
    k = gaussian_kernel()
    return weighted_histogram_filter(weighted_histogram_filter(img, k, 0.9, 1.0), k, 0.25, 0.75)


def test_kernel_values_c6() -> None:
    """C6: get_gaussian_kernel(1.5, 2), exp(-r²/s²) tapered to 0 at radius 3."""
    k = gaussian_kernel(1.5, 2)
    expected = {(0, 0): 1.0, (0, 1): 0.634486, (1, 1): 0.400125, (0, 2): 0.153509, (1, 2): 0.091733,
                (2, 2): 0.010441}
    for (i, j), v in expected.items():
        assert k[2 + i, 2 + j] == pytest.approx(v, abs=1e-6)
        assert k[2 - j, 2 - i] == pytest.approx(v, abs=1e-6)
    assert k.sum() == pytest.approx(6.528106, abs=1e-6)


def test_filters_on_spike_step_and_constant_c7() -> None:
    """C7: spike -> kernel weights after the soft max; both filters: 0.536971 / 0.403444 / 0.268025;
    a 0|1 step -> 0, 0.046088, 0.380494, 0.932318, 1...; a constant is unchanged (Forge's padded copy
    would give 0.3298 in the corner)."""
    spike = np.zeros((7, 7), np.float32)
    spike[3, 3] = 1
    first = weighted_histogram_filter(spike, gaussian_kernel(), 0.9, 1.0)
    assert first[3, 3] == pytest.approx(1.0, abs=1e-6)
    assert first[3, 4] == pytest.approx(0.634486, abs=1e-6)
    assert first[4, 4] == pytest.approx(0.400125, abs=1e-6)
    both = _both(spike)
    assert (both[3, 3], both[3, 4], both[4, 4]) == pytest.approx((0.536971, 0.403444, 0.268025), abs=1e-6)
    step = np.zeros((6, 8), np.float32)
    step[:, 4:] = 1
    row = [0, 0.046088, 0.380494, 0.932318, 1, 1, 1, 1]
    for r in (2, 3):  # the rows whose windows the top/bottom border does not clip
        assert _both(step)[r] == pytest.approx(row, abs=1e-6)
    const = np.full((6, 6), 0.7, np.float32)
    assert np.array_equal(_both(const), const)


def test_vectorised_filter_matches_reference_t4() -> None:
    """T4: vectorised vs the straightforward loop on a 64x64 random map, both percentile windows,
    <= 1e-6; the uint8 opacities differ by at most 1 level on at most 0.1 % of pixels."""
    rng = np.random.default_rng(7)
    img = (rng.random((64, 64)) * rng.random((64, 64)) * 2).astype(np.float32)
    k = gaussian_kernel()
    for pmin, pmax in ((0.9, 1.0), (0.25, 0.75), (0.0, 0.01)):
        fast = weighted_histogram_filter(img, k, pmin, pmax)
        slow = _reference_filter(img, k, pmin, pmax)
        assert np.abs(fast - slow).max() <= 1e-6
    ref = _reference_filter(_reference_filter(img, k, 0.9, 1.0), k, 0.25, 0.75)
    s = SoftInpainting()
    half = np.float32(s.composite_difference_threshold) * np.float32(0.5 / (1.00001 - 0.5))
    y = 1 / (1 + (ref / half) ** np.float32(2))
    ref_u8 = (255 * (1 - y * y * y * (y * (6 * y - 15) + 10))).astype(np.uint8)
    fast_u8 = difference_opacity(img, np.ones((64, 64), np.float32), s)
    diff = np.abs(fast_u8.astype(int) - ref_u8.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.001


def test_filter_speed_t5() -> None:
    """T5: both passes over a 128x128 latent (a 1024² image) in <= 50 ms of CPU time (best of 5; process
    time, so other jobs sharing the cores do not count; A1111's loop takes seconds)."""
    img = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    best = float("inf")
    for _ in range(5):
        t = time.process_time()
        _both(img)
        best = min(best, time.process_time() - t)
    assert best <= 0.05


def _opacity(d: float, n: float = 1.0, **kw: float) -> int:
    """Opacity of a constant distance map (the filters leave a constant unchanged)."""
    grid = difference_opacity(np.full((4, 4), d, np.float32), np.full((4, 4), n, np.float32), SoftInpainting(**kw))
    assert (grid == grid[0, 0]).all()
    return int(grid[0, 0])


def test_composite_curve_defaults_c8() -> None:
    """C8: defaults (influence 0 -> half = 0.499990): D = 0, .1, .25, .5, .75, 1, 2 -> 0, 0, 14, 127,
    210, 240, 254 (uint8 truncation)."""
    got = [_opacity(d) for d in (0, 0.1, 0.25, 0.5, 0.75, 1, 2)]
    assert got == [0, 0, 14, 127, 210, 240, 254]


def test_composite_curve_variants_c8b() -> None:
    """C8b: influence 1 / nmask .5 / D .1 -> 140; influence .5, nmask .5, D .3 -> 173; contrast 0 ->
    127 for any D, even 0; threshold .25, D .5 -> 240; contrast 8, D .4/.5/.6 -> 6/127/242."""
    assert _opacity(0.1, 0.5, composite_mask_influence=1) == 140
    assert _opacity(0.3, 0.5, composite_mask_influence=0.5) == 173
    assert _opacity(0.0, composite_difference_contrast=0) == 127
    assert _opacity(1.3, composite_difference_contrast=0) == 127
    assert _opacity(0.5, composite_difference_threshold=0.25) == 240
    assert [_opacity(d, composite_difference_contrast=8) for d in (0.4, 0.5, 0.6)] == [6, 127, 242]


def test_composite_mask_resize_blur_and_uncrop() -> None:
    """Stage D step 6: a latent-size opacity becomes a processing-size L mask (LANCZOS x8, blur 4),
    uncropped onto the overlay canvas with 0 outside the paste box."""
    d = np.zeros((8, 8), np.float32)
    d[:, 6:] = 5.0  # right quarter changed a lot
    ones = np.ones((8, 8), np.float32)
    m = soft_composite_mask(d, ones, SoftInpainting(), 64, 64, None, (64, 64))
    a = np.asarray(m)
    assert m.mode == "L" and m.size == (64, 64)
    assert a[:, -1].min() >= 250 and a[:, :8].max() == 0  # changed side opaque, far side original
    boxed = soft_composite_mask(d, ones, SoftInpainting(), 64, 64, (40, 8, 64, 64), (120, 80))
    b = np.asarray(boxed)
    assert boxed.size == (120, 80) and b[:, :40].max() == 0 and b[:8].max() == 0
    assert np.array_equal(b[8:72, 40:104], a)
