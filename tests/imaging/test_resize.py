"""resize_image / scaled_size against spec §2.3.

Golden arrays were computed once by re-running A1111 v1.10.1's resize steps (as the spec states them)
with its pinned Pillow 9.5.0, outside this repository; Retouch must reproduce them bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from retouch.imaging import resize_image, scaled_size
from retouch.params import ParamError, ResizeMode

SRC_L = [[0, 37, 74, 111, 148, 185], [91, 128, 165, 202, 239, 20], [182, 219, 0, 37, 74, 111],
         [17, 54, 91, 128, 165, 202]]  # fmt: skip
MODE0_3x2 = [[81, 133, 141], [116, 90, 134]]
MODE1_8x8 = [
    [18, 37, 50, 65, 84, 98, 114, 153], [35, 63, 90, 110, 128, 150, 171, 171],
    [76, 109, 146, 169, 184, 219, 246, 192], [166, 167, 143, 141, 154, 199, 225, 162],
    [240, 189, 70, 29, 41, 86, 101, 96], [192, 148, 41, 6, 21, 54, 66, 99],
    [84, 87, 69, 71, 89, 110, 126, 154], [13, 49, 92, 120, 139, 153, 173, 193],
]  # fmt: skip
MODE2_8x8 = [
    [0, 10, 40, 59, 88, 106, 166, 218], [0, 10, 40, 59, 88, 106, 166, 218],
    [0, 16, 48, 70, 99, 121, 166, 200], [48, 63, 113, 161, 186, 239, 167, 53],
    [167, 210, 167, 84, 108, 164, 108, 19], [130, 178, 117, 10, 37, 66, 114, 158],
    [4, 23, 66, 104, 133, 158, 189, 207], [0, 4, 60, 116, 145, 170, 198, 213],
]  # fmt: skip
MODE2_12x4 = [
    [0, 0, 0, 0, 37, 74, 111, 148, 185, 190, 190, 190], [86, 86, 86, 91, 128, 165, 202, 239, 20, 0, 0, 0],
    [177, 177, 177, 182, 219, 0, 37, 74, 111, 116, 116, 116],
    [12, 12, 12, 17, 54, 91, 128, 165, 202, 207, 207, 207],
]  # fmt: skip


def _src() -> Image.Image:
    return Image.fromarray(np.array(SRC_L, dtype=np.uint8), mode="L")


def _channels_equal(image: Image.Image) -> np.ndarray:
    a = np.asarray(image)
    assert image.mode == "RGB"
    assert (a[:, :, 0] == a[:, :, 1]).all() and (a[:, :, 0] == a[:, :, 2]).all()
    return a[:, :, 0]


def test_mode0_just_resize_keeps_mode_and_matches_golden() -> None:
    out = resize_image(_src(), ResizeMode.JUST_RESIZE, 3, 2)
    assert out.mode == "L" and out.size == (3, 2)
    assert np.asarray(out).tolist() == MODE0_3x2


def test_mode1_crop_and_resize_golden() -> None:
    out = resize_image(_src(), 1, 8, 8)
    assert out.size == (8, 8)
    assert _channels_equal(out).tolist() == MODE1_8x8


def test_mode2_resize_and_fill_bands_golden() -> None:
    tall = resize_image(_src(), ResizeMode.RESIZE_AND_FILL, 8, 8)  # bands above/below
    assert _channels_equal(tall).tolist() == MODE2_8x8
    wide = resize_image(_src(), ResizeMode.RESIZE_AND_FILL, 12, 4)  # bands left/right
    assert _channels_equal(wide).tolist() == MODE2_12x4


def test_mode3_behaves_like_mode2() -> None:
    for size in ((8, 8), (12, 4), (5, 9)):
        a = resize_image(_src(), ResizeMode.LATENT_UPSCALE, *size)
        b = resize_image(_src(), ResizeMode.RESIZE_AND_FILL, *size)
        assert a.tobytes() == b.tobytes()


def test_modes_1_2_return_rgb_for_rgb_input() -> None:
    rgb = Image.new("RGB", (10, 6), (10, 200, 30))
    for mode in (1, 2):
        out = resize_image(rgb, mode, 7, 9)
        assert out.mode == "RGB" and out.size == (7, 9)


def test_mode2_odd_height_leaves_one_black_row_as_a1111() -> None:
    """H=9, source 10x5: sh = 5*8//10 = 4, fh = 9//2 - 4//2 = 2, image rows 2..5, lower band 6..7, row 8 black."""
    out = np.asarray(resize_image(Image.new("RGB", (10, 5), (255, 255, 255)), 2, 8, 9))
    assert (out[:8] > 0).all()
    assert (out[8] == 0).all()


def test_mode1_centres_with_floor_offsets() -> None:
    """3x2 source to 5x5: sh = 5, sw = 3*5//2 = 7, pasted at x = 5//2 - 7//2 = -1 (left column cropped)."""
    src = np.zeros((2, 3), dtype=np.uint8)
    src[:, 0] = 255  # a white left column becomes the cropped-off part and its LANCZOS spill
    out = np.asarray(resize_image(Image.fromarray(src), 1, 5, 5))[:, :, 0]
    ref = np.asarray(Image.fromarray(src).resize((7, 5), Image.Resampling.LANCZOS))[:, 1:6]
    assert (out == ref).all()


@pytest.mark.parametrize("mode", [4, -1, True, "1", 1.0, None])
def test_invalid_mode_is_rejected_with_allowed_values(mode: object) -> None:
    with pytest.raises(ParamError, match="JUST_RESIZE"):
        resize_image(_src(), mode, 8, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(0, 8), (8, 0), (-1, 4)])
def test_invalid_size_is_rejected(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        resize_image(_src(), 0, *size)


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 40), h=st.integers(1, 40), tw=st.integers(1, 40), th=st.integers(1, 40),
    mode=st.sampled_from([0, 1, 2, 3]),
)  # fmt: skip
def test_output_size_and_coverage(w: int, h: int, tw: int, th: int, mode: int) -> None:
    source = Image.new("RGB", (w, h), (200, 200, 200))
    try:
        out = resize_image(source, mode, tw, th)
    except ValueError as error:  # extreme aspect: a floor division makes a side 0, A1111 fails too
        assert "would be" in str(error) and mode != 0
        return
    assert out.size == (tw, th)
    black_rows = int((np.asarray(out).max(axis=(1, 2)) == 0).sum())
    black_cols = int((np.asarray(out).max(axis=(0, 2)) == 0).sum())
    if mode in (0, 1):
        assert black_rows == 0 and black_cols == 0  # crop-and-resize always covers the target
    else:
        assert black_rows <= 1 and black_cols <= 1  # only the odd-size floor quirk may leave one line


def test_extreme_aspect_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="would be 0x1"):
        resize_image(Image.new("RGB", (1, 40)), 2, 40, 1)  # sw = 1*1//40 = 0


def test_scaled_size_truncates() -> None:
    assert scaled_size(512, 768, 1.5) == (768, 1152)
    assert scaled_size(513, 7, 0.5) == (256, 3)
    assert scaled_size(100, 100, 0.333) == (33, 33)
    assert scaled_size(300, 200, 2) == (600, 400)


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_scaled_size_rejects_bad_scale(scale: object) -> None:
    with pytest.raises(ParamError, match="scale_by"):
        scaled_size(512, 512, scale)  # type: ignore[arg-type]


def test_scaled_size_rejects_zero_result() -> None:
    with pytest.raises(ParamError, match="0x"):
        scaled_size(3, 300, 0.2)
