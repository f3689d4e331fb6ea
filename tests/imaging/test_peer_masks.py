"""Peer reference mask algorithms (spec soft-masks.md §2.5, §3.1, §3.2; C16-C19, C21).

Expected values are the spec's §6 numbers, which the spec computed from the peers' formulas; the
docstrings repeat the arithmetic that leads to each one from the spec's own description.
"""

from __future__ import annotations

import numpy as np
import pytest

from retouch.imaging.peer_masks import (
    fooocus_initial_box,
    fooocus_ramp,
    fooocus_respective_field,
    invokeai_fade,
    invokeai_fade_curve,
    invokeai_gradient_mask,
    invokeai_kernel,
)


def _row(*values: int, rows: int = 5) -> np.ndarray:
    return np.tile(np.array(values, np.uint8), (rows, 1))


def test_invokeai_kernels_r2() -> None:
    """§2.5 worked kernels, r = 2: Gaussian σ = 0.8, exp(-1/1.28) = 0.4578 on an axis, 0.4578² = 0.2096
    diagonally, exp(-4/1.28) = 0.0439 at distance 2, 0 at √5 and √8 (> r); Box 1 - d/2: 0.5, 0.2929, 0."""
    g = invokeai_kernel(2, "gaussian")
    assert (g[2, 2], g[2, 3], g[3, 3], g[2, 4]) == pytest.approx((1, 0.4578, 0.2096, 0.0439), abs=1e-4)
    assert g[3, 4] == 0 and g[4, 4] == 0
    b = invokeai_kernel(2, "box")
    assert (b[2, 2], b[2, 3], b[3, 3], b[2, 4], b[4, 4]) == pytest.approx((1, 0.5, 0.29289, 0, 0), abs=1e-5)
    with pytest.raises(ValueError, match="box, gaussian, staged"):
        invokeai_kernel(2, "cone")  # type: ignore[arg-type]


def test_invokeai_gradient_mask_c16() -> None:
    """C16, r = 2 latent px (edge_radius 16), keep row 0 0 0 255 255 255 (255 = keep):
    Gaussian: 255 - 255·0.4578 = 138.26 -> 138 next to the edge, 255 - 255·0.0439 = 243.8 -> 243 (uint8
    truncation, as the spec's value shows), then 255;
    min denoise .3: thr = 0.7·255 = 178.5, 243 in (thr, 255) -> 178; Box: 255 - 127.5 -> 127, then 255;
    Staged, min 0: thr 255, nothing changes; Staged, min .3: the pixels the expansion lowered and that
    were above thr become thr -> 178 178."""
    keep = _row(0, 0, 0, 255, 255, 255, 255)
    cases = [("gaussian", 0.0, [0, 0, 0, 138, 243, 255, 255]), ("gaussian", 0.3, [0, 0, 0, 138, 178, 255, 255]),
             ("box", 0.0, [0, 0, 0, 127, 255, 255, 255]), ("staged", 0.0, [0, 0, 0, 255, 255, 255, 255]),
             ("staged", 0.3, [0, 0, 0, 178, 178, 255, 255])]
    for mode, minimum, want in cases:
        mask, area = invokeai_gradient_mask(keep, 16, mode, minimum)  # type: ignore[arg-type]
        assert (mask == np.array(want, np.uint8)).all(), (mode, minimum, mask[2].tolist())
    _, area = invokeai_gradient_mask(keep, 16, "gaussian")
    assert area[2].tolist() == [0, 0, 0, 0, 0, 255, 255]  # paste-back area: everything the expansion touched


def test_invokeai_edge_radius_below_8_px_c17() -> None:
    """C17: edge_radius 7 -> 7 // 8 = 0 latent px: no expansion (the mask comes back unchanged)."""
    keep = _row(0, 0, 0, 255, 255, 255, 255)
    for mode in ("box", "gaussian", "staged"):
        mask, area = invokeai_gradient_mask(keep, 7, mode)  # type: ignore[arg-type]
        assert np.array_equal(mask, keep) and np.array_equal(area, keep)
    # 8 // 8 = 1 expands (Gaussian σ 0.4: 255 - 255·exp(-1/0.32) = 243.8 -> 243; a radius-1 cone is 0 there)
    assert invokeai_gradient_mask(keep, 8, "gaussian")[0][2].tolist() == [0, 0, 0, 243, 255, 255, 255]


def test_fooocus_ramp_c18() -> None:
    """C18: w(d) = clip(256 - 8d, 0, 255) at Chebyshev distance d outside the binary mask: d = 1 -> 248,
    2 -> 240, 10 -> 176, 31 -> 8, 32 -> 0; 255 inside; a diagonal step counts as 1 (Chebyshev)."""
    mask = np.zeros((80, 80), np.uint8)
    mask[:, :20] = 200  # > 127: masked
    w = fooocus_ramp(mask)
    assert w[40, :20].min() == 255
    assert [int(w[40, 19 + d]) for d in (1, 2, 10, 31, 32)] == [248, 240, 176, 8, 0]
    spot = np.zeros((41, 41), np.uint8)
    spot[20, 20] = 255
    assert fooocus_ramp(spot)[25, 25] == 256 - 8 * 5
    assert fooocus_ramp(np.full((4, 4), 127, np.uint8)).max() == 0  # 127 is not > 127


def test_fooocus_respective_field_c19() -> None:
    """C19: 1024², mask rows 500-599, cols 400-519. Centre (1099 // 2, 919 // 2) = (549, 459), halves
    99 // 2 = 49 and 119 // 2 = 59, l = int(59·1.15) = int(67.85) = 67 -> rows [482, 617), cols [392, 527)
    (135 x 135). k = 0.618: both sides must reach 0.618·1024 = 632.8, i.e. 633 = 135 + 2·249; the sides
    grow alternately by 2, so 249 px per side -> (233, 866, 143, 776). k = 0: unchanged; k = 1: whole."""
    mask = np.zeros((1024, 1024), np.uint8)
    mask[500:600, 400:520] = 255
    assert fooocus_initial_box(mask) == (482, 617, 392, 527)
    assert fooocus_respective_field(mask, 0.618) == (233, 866, 143, 776)
    assert fooocus_respective_field(mask, 0.0) == (482, 617, 392, 527)
    assert fooocus_respective_field(mask, 1.0) == (0, 1024, 0, 1024)
    corner = np.zeros((100, 200), np.uint8)
    corner[0:4, 0:4] = 255  # clamped at the borders, and the height stops at the image's 100 rows
    assert fooocus_respective_field(corner, 0.9) == (0, 100, 0, 180)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fooocus_respective_field(mask, 1.5)
    with pytest.raises(ValueError, match="non-empty"):
        fooocus_initial_box(np.zeros((8, 8), np.uint8))


def test_invokeai_fade_c21() -> None:
    """C21, fade 16: the least-squares cubic through (0,0), (1/16,0), (.2,.2), (.8,.9), (1,1) has
    coefficients (-1.1142, 1.3299, 0.8035, -0.0205) (numpy polyfit, as in the spec); at d_norm 0.1, 0.25,
    0.5, 0.75, 0.99 it gives 0.072, 0.246, 0.574, 0.860, 0.997; 0 clips to 0 (the cubic is -0.0206 there);
    at d_norm >= 1 exactly 1 (the cubic alone gives 0.9986 at 1)."""
    got = invokeai_fade_curve(np.array([0.1, 0.25, 0.5, 0.75, 0.99]), 16)
    assert got == pytest.approx([0.072, 0.246, 0.574, 0.860, 0.997], abs=5e-4)
    assert invokeai_fade_curve(np.array([0.0]), 16)[0] == 0.0
    assert invokeai_fade_curve(np.array([1.0, 1.5, 7.0]), 16).tolist() == [1.0, 1.0, 1.0]
    mask = np.full((5, 40), 255, np.uint8)
    mask[:, :10] = 0  # black = generated region
    fade = invokeai_fade(mask, 16)
    assert (fade[:, :10] == 0).all()
    assert fade[2, 9 + 8] == pytest.approx(float(invokeai_fade_curve(np.array([0.5]), 16)[0]), abs=1e-6)
    assert (fade[:, 26:] == 1.0).all()  # distance >= 16 px
