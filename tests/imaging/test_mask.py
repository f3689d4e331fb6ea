"""Mask helpers against spec §2.4-§2.9 and §4.1.

Blur and latent-mask goldens were computed once with A1111 v1.10.1's pinned OpenCV 4.10 / Pillow 9.5.0,
outside this repository; the blur golden also agrees with a float Gaussian rounded to 8 bits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from retouch.imaging import (
    blur_kernel_size,
    blur_mask,
    conditioning_mask,
    crop_region,
    expand_crop_region,
    invert_mask,
    latent_mask_values,
    to_single_channel_mask,
    whole_picture_overlay_mask,
)

BLUR_ROW_S1 = [0, 0, 0, 0, 1, 14, 62, 102, 62, 14, 1, 0, 0, 0, 0]
BLUR_COL_S2 = [20, 18, 14, 14, 20, 32, 45, 52, 45, 31, 17, 7, 2, 0, 0]
LAT_4x3_TIMES_255 = [[30, 35, 71, 71], [0, 129, 255, 255], [0, 35, 71, 71]]


def _l(values: list[list[int]] | np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L")


@pytest.mark.parametrize(
    ("sigma", "size"),
    [(1, 7), (2, 11), (3, 17), (4, 21), (5, 27), (6, 31), (8, 41), (16, 81), (32, 161), (64, 321)],
)
def test_blur_kernel_size_table(sigma: int, size: int) -> None:
    assert blur_kernel_size(sigma) == size


def test_rgba_mask_with_alpha_uses_alpha_thresholded_when_round() -> None:
    rgba = np.zeros((1, 4, 4), dtype=np.uint8)
    rgba[0, :, 3] = [0, 128, 129, 255]
    rgba[0, :, :3] = 255  # colour is ignored in the alpha branch
    mask = Image.fromarray(rgba, mode="RGBA")
    rounded = to_single_channel_mask(mask, round=True)
    assert rounded.mode == "L" and np.asarray(rounded).tolist() == [[0, 0, 255, 255]]
    assert np.asarray(to_single_channel_mask(mask, round=False)).tolist() == [[0, 128, 129, 255]]


def test_opaque_rgba_and_rgb_masks_use_luminance_never_thresholded() -> None:
    # L = (299*10 + 587*200 + 114*30)/1000 = 123.81 -> 124 (PIL rounds)
    rgb = Image.new("RGB", (2, 1), (10, 200, 30))
    for mask in (rgb, rgb.convert("RGBA")):
        for round_ in (True, False):
            out = to_single_channel_mask(mask, round=round_)
            assert out.mode == "L" and np.asarray(out).tolist() == [[124, 124]]


def test_invert_mask() -> None:
    assert np.asarray(invert_mask(_l([[0, 1, 128, 255]]))).tolist() == [[255, 254, 127, 0]]


def test_invert_rejects_rgba() -> None:
    with pytest.raises(ValueError, match="to_single_channel_mask"):
        invert_mask(Image.new("RGBA", (2, 2)))


def test_blur_x_golden_and_float_gaussian() -> None:
    row = np.zeros((1, 15), dtype=np.uint8)
    row[0, 7] = 255
    out = np.asarray(blur_mask(_l(row), 1, 0))[0]
    assert out.tolist() == BLUR_ROW_S1
    taps = np.exp(-(np.arange(-3, 4) ** 2) / 2.0)
    expected = np.round(255 * taps / taps.sum())
    assert np.abs(out[4:11] - expected).max() <= 1


def test_blur_y_golden_with_reflect101_border() -> None:
    col = np.zeros((15, 3), dtype=np.uint8)
    col[7, :] = 255
    col[0, :] = 100
    out = np.asarray(blur_mask(_l(col), 0, 2))
    for c in range(3):
        assert out[:, c].tolist() == BLUR_COL_S2


def test_blur_is_separable_x_then_y_and_zero_is_identity() -> None:
    rng = np.random.default_rng(0)
    mask = _l(rng.integers(0, 256, (20, 30)))
    assert blur_mask(mask, 0, 0).tobytes() == mask.tobytes()
    both = blur_mask(mask, 3, 2)
    assert both.tobytes() == blur_mask(blur_mask(mask, 3, 0), 0, 2).tobytes()
    assert both.mode == "L" and both.size == (30, 20)


def test_blur_rejects_negative_or_float_sigma() -> None:
    with pytest.raises(ValueError, match="sigma_x"):
        blur_mask(_l([[0]]), -1, 0)
    with pytest.raises(ValueError, match="sigma_y"):
        blur_mask(_l([[0]]), 0, 1.5)  # type: ignore[arg-type]


def test_crop_region_bbox_padding_and_empty() -> None:
    mask = np.zeros((50, 40), dtype=np.uint8)
    mask[10:20, 5:30] = 1
    assert crop_region(_l(mask), 0) == (5, 10, 30, 20)
    assert crop_region(_l(mask), 3) == (2, 7, 33, 23)
    assert crop_region(_l(mask), 100) == (0, 0, 40, 50)
    assert crop_region(_l(np.zeros((5, 5))), 4) is None


def test_expand_crop_region_spec_example() -> None:
    assert expand_crop_region((100, 200, 228, 232), 512, 512, 1024, 1024) == (100, 152, 228, 280)


def test_expand_crop_region_shifts_back_inside_and_clamps() -> None:
    # tall box, wide target 2:1: width must grow by int(40*2 - 10) = 70 -> 35 each side -> x1 = -33
    assert expand_crop_region((2, 0, 12, 40), 200, 100, 300, 300) == (0, 0, 80, 40)
    # near the right edge: shifted left by the overflow
    assert expand_crop_region((290, 0, 300, 40), 200, 100, 300, 300) == (220, 0, 300, 40)
    # image too narrow for the aspect: clamped, aspect not reached
    assert expand_crop_region((10, 0, 20, 40), 200, 100, 50, 300) == (0, 0, 50, 40)


def test_expand_crop_region_rejects_bad_box() -> None:
    with pytest.raises(ValueError, match="inside"):
        expand_crop_region((5, 5, 5, 10), 64, 64, 100, 100)


@st.composite
def _box_case(draw: st.DrawFn) -> tuple[tuple[int, int, int, int], int, int, int, int]:
    iw, ih = draw(st.integers(1, 600)), draw(st.integers(1, 600))
    x1, y1 = draw(st.integers(0, iw - 1)), draw(st.integers(0, ih - 1))
    x2, y2 = draw(st.integers(x1 + 1, iw)), draw(st.integers(y1 + 1, ih))
    w, h = draw(st.integers(8, 1024)), draw(st.integers(8, 1024))
    return (x1, y1, x2, y2), w, h, iw, ih


@settings(max_examples=300, deadline=None)
@given(_box_case())
def test_expand_crop_region_invariants(case: tuple[tuple[int, int, int, int], int, int, int, int]) -> None:
    box, w, h, iw, ih = case
    x1, y1, x2, y2 = expand_crop_region(box, w, h, iw, ih)
    assert 0 <= x1 < x2 <= iw and 0 <= y1 < y2 <= ih  # inside the image
    assert x1 <= box[0] and y1 <= box[1] and x2 >= box[2] and y2 >= box[3]  # contains the input
    cw, ch = box[2] - box[0], box[3] - box[1]
    if cw / ch > w / h:
        assert (x1, x2) == (box[0], box[2])
        if math.floor(cw / (w / h)) <= ih:  # room to grow: aspect reached within 1 px
            assert abs((y2 - y1) - cw * h / w) < 1 + 1e-9
    else:
        assert (y1, y2) == (box[1], box[3])
        if math.floor(ch * (w / h)) <= iw:
            assert abs((x2 - x1) - ch * w / h) < 1 + 1e-9


def test_whole_picture_overlay_mask_doubles_and_clips() -> None:
    out = whole_picture_overlay_mask(_l([[0, 1, 127, 128, 200, 255]]))
    assert out.mode == "L" and np.asarray(out).tolist() == [[0, 2, 254, 255, 255, 255]]
    rgb = _l([[0, 64, 255]]).convert("RGB")  # resize modes 1/2 return RGB masks
    assert np.asarray(whole_picture_overlay_mask(rgb)).tolist() == [[0, 128, 255]]


def test_latent_mask_values_golden_and_rounding() -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 3:8] = 255
    mask[0, 0] = 200
    soft = latent_mask_values(_l(mask), 4, 3, round=False)
    assert soft.dtype == np.float32 and soft.shape == (3, 4)
    expected = np.asarray(LAT_4x3_TIMES_255, dtype=np.float32) / np.float32(255)
    assert np.array_equal(soft, expected)
    hard = latent_mask_values(_l(mask), 4, 3, round=True)
    assert hard.tolist() == [[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]]  # 129/255 > 0.5 -> 1


def test_latent_mask_uses_channel_0_of_rgb() -> None:
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    assert latent_mask_values(red, 2, 2, round=False).tolist() == [[1, 1], [1, 1]]


def test_conditioning_mask() -> None:
    mask = _l([[0, 127, 128, 255]])
    soft = conditioning_mask(mask, round=False)
    assert soft.dtype == np.float32 and soft.shape == (1, 4)
    assert np.allclose(soft, np.array([[0, 127, 128, 255]]) / 255)
    assert conditioning_mask(mask, round=True).tolist() == [[0, 0, 1, 1]]


def _alpha_masks() -> dict[str, Image.Image]:
    """Masks whose alpha is [0, 100, 200, 255] over black pixels (the G4 case: a painter's layer)."""
    alpha = Image.frombytes("L", (4, 1), bytes([0, 100, 200, 255]))
    black = Image.new("L", (4, 1), 0)
    pa = Image.new("P", (4, 1))
    pa.putpalette([0, 0, 0] * 256)
    pa.putalpha(alpha)
    rgba = Image.merge("RGBA", [black, black, black, alpha])
    return {"RGBA": rgba, "LA": Image.merge("LA", [black, alpha]), "PA": pa}


def _values(mask: Image.Image) -> list[int]:
    return np.asarray(mask).ravel().tolist()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_mask_alpha_modes_on_alpha_band_masks_g4(mode: str) -> None:
    """G4 (soft-masks.md §4): A1111 reads the alpha of RGBA only; an LA/PA mask of black pixels with a
    soft alpha is luminance 0 there, i.e. an empty mask. 'auto' and 'alpha' read [0, 100, 200, 255];
    'luminance' reads 0 everywhere; with ``round`` the alpha is thresholded > 128 (100 -> 0, 200 -> 255)."""
    mask = _alpha_masks()[mode]
    soft, black = [0, 100, 200, 255], [0, 0, 0, 0]
    assert _values(to_single_channel_mask(mask, False)) == (soft if mode == "RGBA" else black)
    assert _values(to_single_channel_mask(mask, False, "auto")) == soft
    assert _values(to_single_channel_mask(mask, False, "alpha")) == soft
    assert _values(to_single_channel_mask(mask, True, "auto")) == [0, 0, 255, 255]
    assert _values(to_single_channel_mask(mask, True, "luminance")) == black


def test_mask_alpha_modes_on_palette_transparency_and_grey_g4() -> None:
    """P with one transparent index (as PNG keeps it: ``info['transparency'] = 0``): A1111 luminance 0;
    'auto'/'alpha' read index 0 as alpha 0, the others 255. A grey L mask: luminance in every mode but
    'alpha', which refuses it naming the modes that carry transparency. An opaque RGBA: 'auto' falls back
    to luminance like A1111, 'alpha' reads 255 everywhere."""
    p = Image.frombytes("P", (4, 1), bytes([0, 1, 0, 1]))
    p.putpalette([0, 0, 0, 0, 0, 0])
    p.info["transparency"] = 0
    assert _values(to_single_channel_mask(p, False)) == [0, 0, 0, 0]
    assert _values(to_single_channel_mask(p, False, "auto")) == [0, 255, 0, 255]
    assert _values(to_single_channel_mask(p, False, "alpha")) == [0, 255, 0, 255]
    grey = Image.frombytes("L", (4, 1), bytes([0, 60, 130, 255]))
    for alpha in ("a1111", "auto", "luminance"):
        assert _values(to_single_channel_mask(grey, True, alpha)) == [0, 60, 130, 255]
    with pytest.raises(ValueError, match="needs a mask with transparency.*'L'"):
        to_single_channel_mask(grey, False, "alpha")
    opaque = Image.merge("RGBA", [grey, grey, grey, Image.new("L", (4, 1), 255)])
    assert _values(to_single_channel_mask(opaque, False, "auto")) == [0, 60, 130, 255]
    assert _values(to_single_channel_mask(opaque, False, "alpha")) == [255] * 4
    with pytest.raises(ValueError, match="a1111, auto, alpha, luminance"):
        to_single_channel_mask(grey, False, "red")
