"""Overlay, uncrop, mask composite and exact paste-back against spec §2.12.

OVERLAY / APPLIED were computed once by re-running A1111 v1.10.1's overlay steps (as the spec states them)
with its pinned Pillow 9.5.0, outside this repository.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from retouch.imaging import apply_overlay, exact_paste, make_overlay, mask_composite, uncrop

ORIG = [[[200, 100, 50]] * 4 + [[13, 250, 77]] * 2]
GEN = [[[10, 20, 240]] * 4 + [[255, 0, 128]] * 2]
MASK = [[0, 1, 64, 128, 200, 255]]
OVERLAY = [[[200, 100, 50, 255], [199, 100, 50, 254], [200, 100, 49, 191], [200, 100, 50, 127],
            [13, 250, 78, 55], [0, 0, 0, 0]]]  # fmt: skip
APPLIED = [[[200, 100, 50], [198, 100, 51], [152, 80, 97], [105, 60, 145], [203, 54, 117], [255, 0, 128]]]


def _rgb(values: object) -> Image.Image:
    return Image.fromarray(np.asarray(values, dtype=np.uint8), mode="RGB")


def _l(values: object) -> Image.Image:
    return Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L")


def test_make_overlay_golden() -> None:
    overlay = make_overlay(_rgb(ORIG), _l(MASK))
    assert overlay.mode == "RGBA"
    assert np.asarray(overlay).tolist() == OVERLAY


def test_apply_overlay_golden() -> None:
    out = apply_overlay(_rgb(GEN), make_overlay(_rgb(ORIG), _l(MASK)), None)
    assert out.mode == "RGB"
    assert np.asarray(out).tolist() == APPLIED


def _random_case(seed: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    orig = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    gen = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = rng.integers(0, 256, (h, w), dtype=np.uint8)
    return orig, gen, mask


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.integers(1, 20))
def test_rounded_mask_keeps_outside_pixels_byte_identical(seed: int, w: int, h: int) -> None:
    orig, gen, mask = _random_case(seed, w, h)
    mask = np.where(mask > 127, 255, 0).astype(np.uint8)
    out = np.asarray(apply_overlay(_rgb(gen), make_overlay(_rgb(orig), _l(mask)), None))
    assert np.array_equal(out[mask == 0], orig[mask == 0])
    assert np.array_equal(out[mask == 255], gen[mask == 255])


def test_only_masked_uncrop_puts_crop_exactly_in_box() -> None:
    orig = np.full((30, 40, 3), 50, dtype=np.uint8)
    mask = np.zeros((30, 40), dtype=np.uint8)
    x, y, w, h = 7, 5, 16, 12
    mask[y : y + h, x : x + w] = 255
    crop = Image.new("RGB", (64, 48), (250, 10, 90))  # processing-size result, 4:3 like the box
    out = np.asarray(apply_overlay(crop, make_overlay(_rgb(orig), _l(mask)), (x, y, w, h)))
    assert out.shape == (30, 40, 3)  # the original's size, not the processing size
    assert (out[y : y + h, x : x + w] == (250, 10, 90)).all()
    outside = np.ones((30, 40), dtype=bool)
    outside[y : y + h, x : x + w] = False
    assert (out[outside] == 50).all()


def test_uncrop_resizes_with_crop_and_resize() -> None:
    crop = np.zeros((8, 8, 3), dtype=np.uint8)
    crop[:, :4] = 255  # left half white
    canvas = uncrop(_rgb(crop), (20, 10), (2, 1, 4, 8))  # box 4x8: mode 1 scales to 8x8, crops 2 each side
    a = np.asarray(canvas)
    assert canvas.mode == "RGBA" and canvas.size == (20, 10)
    assert (a[:, :2, 3] == 0).all() and (a[:, 6:, 3] == 0).all() and (a[:1, :, 3] == 0).all()
    assert (a[1:9, 2:6, 3] == 255).all()
    assert (a[1:9, 2:4, 0] >= 250).all() and (a[1:9, 4:6, 0] <= 5).all()


def test_overlay_none_returns_image_and_needs_no_box() -> None:
    gen = _rgb(GEN).convert("RGBA")
    out = apply_overlay(gen, None, None)
    assert out.mode == "RGB" and out.tobytes() == _rgb(GEN).tobytes()
    with pytest.raises(ValueError, match="paste_box needs an overlay"):
        apply_overlay(gen, None, (0, 0, 1, 1))


def test_overlay_larger_than_image_is_composited_at_top_left() -> None:
    """Processing size not a multiple of 8: the decoded image is smaller than the overlay (spec §8.8)."""
    orig = np.full((10, 12, 3), 77, dtype=np.uint8)
    mask = np.full((10, 12), 255, dtype=np.uint8)
    mask[:, :3] = 0
    out = np.asarray(
        apply_overlay(Image.new("RGB", (8, 8), (1, 2, 3)), make_overlay(_rgb(orig), _l(mask)), None)
    )
    assert out.shape == (8, 8, 3)
    assert (out[:, :3] == 77).all() and (out[:, 3:] == (1, 2, 3)).all()


def test_make_overlay_rejects_size_mismatch() -> None:
    with pytest.raises(ValueError, match="must match"):
        make_overlay(Image.new("RGB", (4, 4)), Image.new("L", (4, 5)))


def test_mask_composite_cuts_out_generated() -> None:
    out = mask_composite(_rgb(GEN), _l(MASK), None)
    a = np.asarray(out)
    assert out.mode == "RGBA"
    assert a[0, :, 3].tolist() == MASK[0]
    assert a[0, 5].tolist() == [255, 0, 128, 255]
    assert a[0, 0].tolist() == [0, 0, 0, 0]


def test_mask_composite_uncrops_to_mask_size() -> None:
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:17, 7:23] = 255
    out = mask_composite(Image.new("RGB", (64, 48), (250, 10, 90)), _l(mask), (7, 5, 16, 12))
    a = np.asarray(out)
    assert out.size == (40, 30)
    assert (a[5:17, 7:23] == (250, 10, 90, 255)).all()
    assert (a[mask == 0] == 0).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.integers(1, 20))
def test_exact_paste_exact_at_ends_and_within_one_level_of_a1111(seed: int, w: int, h: int) -> None:
    orig, gen, mask = _random_case(seed, w, h)
    mask[0, 0], mask[-1, -1] = 0, 255
    out = np.asarray(exact_paste(_rgb(orig), _rgb(gen), _l(mask))).astype(int)
    assert np.array_equal(out[mask == 0], orig[mask == 0])
    assert np.array_equal(out[mask == 255], gen[mask == 255])
    a1111 = np.asarray(apply_overlay(_rgb(gen), make_overlay(_rgb(orig), _l(mask)), None)).astype(int)
    assert np.abs(out - a1111).max() <= 1
    alpha = (255 - mask.astype(float))[:, :, None] / 255
    assert np.abs(out - (alpha * orig + (1 - alpha) * gen)).max() <= 0.5 + 1e-9


def test_exact_paste_golden_and_top_left_cut() -> None:
    out = exact_paste(_rgb(ORIG), _rgb(GEN), _l(MASK))
    # m=1: 200*254/255 + 10/255 = 199.25 -> 199 (A1111's premultiplied path gives 198)
    assert np.asarray(out)[0, 1].tolist() == [199, 100, 51]
    small = exact_paste(_rgb(ORIG), _rgb(GEN).crop((0, 0, 2, 1)), _l(MASK))
    assert small.size == (2, 1) and np.asarray(small).tolist() == [[[200, 100, 50], [199, 100, 51]]]
    with pytest.raises(ValueError, match="must not exceed"):
        exact_paste(_rgb(ORIG).crop((0, 0, 2, 1)), _rgb(GEN), _l(MASK).crop((0, 0, 2, 1)))
