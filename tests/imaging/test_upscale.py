"""The built-in upscalers against A1111's Upscaler.upscale (v1.10.1 modules/upscaler.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retouch.imaging.upscale import UPSCALERS, upscale_image, upscaler_name


def _image(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_lanczos_at_a_whole_scale_is_one_resize() -> None:
    """64x48 x2: target (128, 96) is reached by the first LANCZOS resize, nothing else runs."""
    im = _image(64, 48)
    assert upscale_image(im, 2.0, "Lanczos").tobytes() == im.resize((128, 96), Image.Resampling.LANCZOS).tobytes()


def test_nearest_then_lanczos_to_the_multiple_of_8() -> None:
    """50x30 x2.5: target int(125 // 8 * 8) x int(75 // 8 * 8) = 120x72; NEAREST to 125x75 reaches it,
    then one LANCZOS resize to 120x72."""
    im = _image(50, 30)
    expected = im.resize((125, 75), Image.Resampling.NEAREST).resize((120, 72), Image.Resampling.LANCZOS)
    out = upscale_image(im, 2.5, "nearest")
    assert out.size == (120, 72) and out.tobytes() == expected.tobytes()


def test_none_returns_the_image() -> None:
    im = _image(20, 20)
    assert upscale_image(im, 3.0, "None") is im


def test_names_and_indices_as_a1111_accepts_them() -> None:
    assert UPSCALERS == ("None", "Lanczos", "Nearest")
    assert upscaler_name("LANCZOS") == "Lanczos" and upscaler_name(2) == "Nearest"
    with pytest.raises(ValueError, match="ESRGAN_4x.*need weights") as e:
        upscaler_name("R-ESRGAN 4x+")
    assert "None, Lanczos, Nearest" in str(e.value)
    with pytest.raises(ValueError):
        upscaler_name(3)
