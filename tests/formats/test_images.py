"""Image decoding and encoding with clear errors (spec §2.2)."""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouch.formats.images import (
    ALLOWED_FORMATS,
    CorruptImageError,
    ImageDecodeError,
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidBase64Error,
    NotAnImageError,
    UnsupportedFormatError,
    decode_base64_image,
    encode_png,
    encode_png_base64,
    fix_image,
    open_image,
)
from retouch.formats.png import read_infotext

LIMIT = 4096 * 4096


def _gradient(w: int = 16, h: int = 12) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(w)[None, :] * 10
    a[..., 1] = np.arange(h)[:, None] * 20
    a[..., 2] = 77
    return Image.fromarray(a)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (the pixel data is a few bytes)."""
    png = encode_png(Image.new("L", (1, 1)))
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return png[:16] + ihdr + crc + png[33:]


def test_decode_plain_and_data_url_give_same_pixels() -> None:
    im = _gradient()
    b64 = _b64(encode_png(im))
    plain = decode_base64_image(b64, max_pixels=LIMIT)
    with_prefix = decode_base64_image("data:image/png;base64," + b64, max_pixels=LIMIT)
    assert plain.size == (16, 12)
    assert np.array_equal(np.asarray(plain), np.asarray(im))
    assert np.array_equal(np.asarray(with_prefix), np.asarray(im))


def test_decode_accepts_jpeg_and_webp() -> None:
    for fmt in ("JPEG", "WEBP"):
        buf = io.BytesIO()
        _gradient().save(buf, format=fmt)
        assert decode_base64_image(_b64(buf.getvalue()), max_pixels=LIMIT).size == (16, 12)


def test_broken_base64() -> None:
    with pytest.raises(InvalidBase64Error, match="not valid base64"):
        decode_base64_image("iVBOR%%%not base64", max_pixels=LIMIT)


def test_not_an_image_lists_allowed_formats() -> None:
    with pytest.raises(NotAnImageError, match="is not an image; allowed formats: PNG, JPEG") as exc:
        decode_base64_image(_b64(b"hello world, definitely not pixels"), max_pixels=LIMIT)
    assert isinstance(exc.value, ImageDecodeError)
    assert isinstance(exc.value, ValueError)


def test_empty_payload() -> None:
    with pytest.raises(NotAnImageError, match="empty"):
        decode_base64_image("data:image/png;base64,", max_pixels=LIMIT)


def test_unsupported_format_named() -> None:
    buf = io.BytesIO()
    _gradient().save(buf, format="PPM")
    assert "PPM" not in ALLOWED_FORMATS
    with pytest.raises(UnsupportedFormatError, match="unsupported format PPM; allowed formats: PNG"):
        decode_base64_image(_b64(buf.getvalue()), max_pixels=LIMIT)


def test_over_limit_checked_from_header() -> None:
    data = _b64(encode_png(_gradient(40, 30)))
    with pytest.raises(ImageTooLargeError, match=r"40x30 = 1200 pixels; the limit is 1000 pixels"):
        decode_base64_image(data, max_pixels=1000)
    assert decode_base64_image(data, max_pixels=1200).size == (40, 30)


def test_header_claiming_huge_size_is_rejected_without_decoding() -> None:
    # 10000 x 10000 from a ~70-byte file: rejected by our check before any pixel is decoded.
    data = _b64(_png_claiming(10000, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageTooLargeError, match="10000x10000"):
            decode_base64_image(data, max_pixels=LIMIT)


def test_decompression_bomb_beyond_pil_limit() -> None:
    with pytest.raises(ImageTooLargeError, match="too large"):
        decode_base64_image(_b64(_png_claiming(100_000, 100_000)), max_pixels=LIMIT)


def test_truncated_image_is_corrupt() -> None:
    png = encode_png(_gradient(64, 64))
    with pytest.raises(CorruptImageError, match="corrupt or truncated"):
        decode_base64_image(_b64(png[: len(png) // 2]), max_pixels=LIMIT)


def test_bad_max_pixels() -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        decode_base64_image(_b64(encode_png(_gradient())), max_pixels=0)


def test_fix_image_applies_exif_orientation() -> None:
    im = _gradient(16, 12)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif, quality=95)
    decoded = decode_base64_image(_b64(buf.getvalue()), max_pixels=LIMIT)
    assert decoded.size == (12, 16)
    raw = decode_base64_image(_b64(buf.getvalue()), max_pixels=LIMIT, fix=False)
    assert raw.size == (16, 12)


def test_fix_image_byte_transparency_becomes_rgba() -> None:
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    p.info["transparency"] = bytes([255, 0] + [255] * 254)
    fixed = fix_image(p)
    assert fixed.mode == "RGBA"
    assert fixed.getpixel((0, 0)) == (255, 0, 0, 0)
    assert p.mode == "P"  # caller's image untouched


def test_fix_image_int_transparency_kept() -> None:
    p = Image.new("P", (4, 4), 1)
    p.info["transparency"] = 1
    assert fix_image(p).mode == "P"
    assert fix_image(_gradient()).mode == "RGB"


def test_encode_png_base64_round_trip_with_infotext() -> None:
    im = _gradient()
    b64 = encode_png_base64(im, "a prompt\nSteps: 2, Seed: 3, Sampler: Euler")
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    back = Image.open(io.BytesIO(raw))
    assert np.array_equal(np.asarray(back), np.asarray(im))
    assert read_infotext(back) == "a prompt\nSteps: 2, Seed: 3, Sampler: Euler"
    assert read_infotext(Image.open(io.BytesIO(base64.b64decode(encode_png_base64(im))))) is None


def test_open_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="no such file"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(ImageNotFoundError, match="not a file"):
        open_image(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(NotAnImageError, match=str(bad)):
        open_image(bad)
    good = tmp_path / "good.png"
    good.write_bytes(encode_png(_gradient()))
    assert open_image(good).size == (16, 12)
    with pytest.raises(ImageTooLargeError, match=str(good)):
        open_image(good, max_pixels=100)
