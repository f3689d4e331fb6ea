"""Colour correction against spec §2.13.

CC_MATCHED_LAB and CC_OUT were computed once with A1111 v1.10.1's pinned libraries (scikit-image 0.21.0
``match_histograms``, blendmodes 2022 ``blendLayers(LUMINOSITY)``, OpenCV 4.10, Pillow 9.5.0), outside this
repository; the hand-written numpy versions must reproduce them bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from retouch.imaging import apply_color_correction, color_reference, luminosity_blend, match_histograms

CC_MATCHED_LAB = [
    [[48, 114, 146], [108, 112, 146], [134, 110, 177], [190, 108, 189], [209, 108, 199]],
    [[166, 109, 183], [197, 108, 189], [220, 108, 199], [6, 115, 174], [33, 116, 167]],
    [[232, 108, 199], [18, 116, 171], [72, 118, 163], [121, 124, 157], [58, 114, 146]],
    [[99, 118, 161], [154, 124, 153], [86, 113, 146], [146, 111, 148], [178, 109, 183]],
]  # fmt: skip
CC_OUT = [
    [[74, 91, 59], [99, 122, 85], [114, 126, 26], [147, 157, 28], [182, 189, 33]],
    [[129, 140, 26], [160, 170, 40], [195, 201, 46], [68, 59, 45], [93, 94, 58]],
    [[209, 214, 60], [80, 75, 50], [107, 111, 45], [143, 134, 84], [76, 93, 60]],
    [[120, 123, 63], [156, 147, 102], [87, 107, 72], [113, 138, 95], [131, 142, 28]],
]  # fmt: skip


def _pattern(h: int, w: int, a: int, b: int, d: int) -> np.ndarray:
    y, x, k = np.mgrid[0:h, 0:w, 0:3]
    return ((x * a + y * b + k * d) % 256).astype(np.uint8)


def _golden_inputs() -> tuple[np.ndarray, np.ndarray]:
    generated = _pattern(4, 5, 29, 71, 101)
    reference = _pattern(5, 4, 13, 47, 11)
    reference[:, :, 2] //= 3
    return generated, reference


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def test_color_reference_is_opencv_lab() -> None:
    _, reference = _golden_inputs()
    lab = color_reference(Image.fromarray(reference))
    assert lab.dtype == np.uint8 and lab.shape == (5, 4, 3)
    assert np.array_equal(lab, cv2.cvtColor(reference, cv2.COLOR_RGB2LAB))
    # CIE LAB of sRGB white, black, red: (100, 0, 0), (0, 0, 0), (53.24, 80.09, 67.20); 8-bit: L*255/100, +128
    corners = color_reference(
        Image.fromarray(np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], np.uint8))
    )
    assert corners.tolist() == [[[255, 128, 128], [0, 128, 128], [136, 208, 195]]]


def test_match_histograms_golden() -> None:
    generated, reference = _golden_inputs()
    lab = cv2.cvtColor(generated, cv2.COLOR_RGB2LAB)
    matched = match_histograms(lab, color_reference(Image.fromarray(reference)))
    assert matched.dtype == np.uint8
    assert matched.tolist() == CC_MATCHED_LAB


def test_apply_color_correction_golden() -> None:
    generated, reference = _golden_inputs()
    out = apply_color_correction(color_reference(Image.fromarray(reference)), Image.fromarray(generated))
    assert out.mode == "RGB" and out.size == (5, 4)
    assert np.asarray(out).tolist() == CC_OUT


def test_match_histograms_hand_computed() -> None:
    # source values 0,1,2,3 (quantiles .25 .5 .75 1) onto template {10, 10, 20, 40} (quantiles .5, .75, 1)
    source = np.array([[[0], [1], [2], [3]]], dtype=np.uint8)
    template = np.array([[[10], [10], [20], [40]]], dtype=np.uint8)
    # .25 lies left of the first knot -> 10; .5 -> 10; .75 -> 20; 1 -> 40
    assert match_histograms(source, template)[0, :, 0].tolist() == [10, 10, 20, 40]
    # interpolation between knots is truncated: template {0, 3} has knots (.5, 0), (1, 3); q=.75 -> 1.5 -> 1
    source = np.array([[[5], [6], [7], [8]]], dtype=np.uint8)
    template = np.array([[[0], [0], [3], [3]]], dtype=np.uint8)
    assert match_histograms(source, template)[0, :, 0].tolist() == [0, 0, 1, 3]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_matched_histogram_follows_reference(seed: int) -> None:
    """64 distinct source values onto 64 distinct reference values, each 4 times: quantiles coincide."""
    rng = np.random.default_rng(seed)
    source = np.stack([rng.permutation(256)[:64].reshape(8, 8) for _ in range(3)], axis=2).astype(np.uint8)
    reference = np.stack(
        [rng.permutation(np.repeat(rng.permutation(256)[:64], 4)).reshape(16, 16) for _ in range(3)], axis=2
    ).astype(np.uint8)
    matched = match_histograms(source, reference)
    for c in range(3):
        hist = np.bincount(matched[:, :, c].ravel(), minlength=256)
        assert np.array_equal(hist * 4, np.bincount(reference[:, :, c].ravel(), minlength=256))
        order = np.argsort(source[:, :, c].ravel())  # the source's rank order is kept
        assert (np.diff(matched[:, :, c].ravel()[order].astype(int)) > 0).all()


def test_match_histograms_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        match_histograms(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="same C"):
        match_histograms(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 1), np.uint8))


def test_luminosity_blend_hand_computed() -> None:
    red, grey = Image.new("RGB", (1, 1), (255, 0, 0)), Image.new("RGB", (1, 1), (128, 128, 128))
    # SetLum: (1, .20296, .20296) + clip above 1 around L=.50196 -> (1, .28953, .28953) -> truncated (255, 73, 73)
    assert np.asarray(luminosity_blend(red, grey)).tolist() == [[[255, 73, 73]]]
    green, dark = Image.new("RGB", (1, 1), (0, 200, 0)), Image.new("RGB", (1, 1), (10, 10, 10))
    # clip below 0: L=.03922, G -> .03922 + .32376*.03922/.46047 = .06679 -> 17
    assert np.asarray(luminosity_blend(green, dark)).tolist() == [[[0, 17, 0]]]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_correction_keeps_generated_luminance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    generated = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    reference = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8) // 2
    out = np.asarray(
        apply_color_correction(color_reference(Image.fromarray(reference)), Image.fromarray(generated))
    )
    # SetLum/ClipColor keep luminance exactly; truncating each channel to uint8 loses less than 1 level
    assert np.abs(_luma(out) - _luma(generated)).max() <= 1.0 + 1e-9


def test_correcting_an_image_towards_itself() -> None:
    """Histogram matching to itself is the identity; what remains is the 8-bit LAB round trip."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:48, 0:48]
    image = np.stack([x * 3 + 20, y * 2 + 40, x + y + 60], axis=-1).astype(np.uint8)
    image = np.clip(image.astype(int) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
    lab = color_reference(Image.fromarray(image))
    assert np.array_equal(match_histograms(lab, lab), lab)
    out = np.asarray(apply_color_correction(lab, Image.fromarray(image))).astype(int)
    round_trip = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(int)
    assert np.abs(out - image).max() <= np.abs(round_trip - image).max()
    assert np.abs(out - image).mean() < 1.0
    assert (np.abs(out - image) <= 1).mean() > 0.9
