"""Images in and out: base64 and files to PIL images with clear errors, PNG bytes with infotext.

Decoding follows A1111's API (spec §2.2): a ``data:image/...;base64,`` prefix is stripped, the rest is
base64-decoded and opened with PIL, then :func:`fix_image` applies EXIF orientation and turns
byte-string transparency into an alpha channel. Unlike A1111, each failure raises its own
:class:`ImageDecodeError` subclass naming the problem, and the pixel count is checked from the header
before any pixel data is decoded, so a small file that claims a huge size (a decompression bomb) costs
nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError

from retouch.formats.png import png_info

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "InvalidBase64Error",
    "NotAnImageError",
    "UnsupportedFormatError",
    "ImageTooLargeError",
    "CorruptImageError",
    "ImageNotFoundError",
    "decode_base64_image",
    "open_image",
    "load_image",
    "fix_image",
    "encode_png",
    "encode_png_base64",
]

#: PIL format names accepted as input (MPO is the multi-picture JPEG many phones write).
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "MPO", "WEBP", "AVIF", "BMP", "GIF", "TIFF")
#: A generous default limit: 64 megapixels (8192 x 8192).
DEFAULT_MAX_PIXELS = 8192 * 8192

_ALLOWED_TEXT = ", ".join(ALLOWED_FORMATS)


class ImageDecodeError(ValueError):
    """An input image could not be used; the message names the problem and what is allowed."""


class InvalidBase64Error(ImageDecodeError):
    """The string is not valid base64."""


class NotAnImageError(ImageDecodeError):
    """The bytes are not an image PIL recognises."""


class UnsupportedFormatError(ImageDecodeError):
    """The bytes are an image in a format outside :data:`ALLOWED_FORMATS`."""


class ImageTooLargeError(ImageDecodeError):
    """The image's header declares more pixels than allowed."""


class CorruptImageError(ImageDecodeError):
    """The header is fine but the pixel data is truncated or broken."""


class ImageNotFoundError(ImageDecodeError):
    """The path does not exist or is not a readable file."""


def _strip_data_url(data: str) -> str:
    """Drop a ``data:image/...;base64,`` prefix (spec §2.2: everything up to the first comma after ';')."""
    if data.startswith("data:"):
        semi = data.find(";")
        comma = data.find(",", semi if semi >= 0 else 0)
        if comma < 0:
            raise InvalidBase64Error("data URL has no ',' before its base64 payload")
        return data[comma + 1 :]
    return data


def load_image(fp: IO[bytes], *, max_pixels: int, source: str = "image", fix: bool = True) -> Image.Image:
    """Open, check and fully decode one image from a binary file object.

    Order: identify the format, check it against :data:`ALLOWED_FORMATS`, check ``width * height``
    against ``max_pixels`` from the header, and only then decode the pixels. Returns a loaded image
    (first frame of animations), passed through :func:`fix_image` when ``fix`` is True.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer; got {max_pixels!r}")
    try:
        image = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{source} is too large: {exc}; the limit is {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise NotAnImageError(f"{source} is not an image; allowed formats: {_ALLOWED_TEXT}") from None
    if image.format not in ALLOWED_FORMATS:
        raise UnsupportedFormatError(
            f"{source} is in unsupported format {image.format}; allowed formats: {_ALLOWED_TEXT}"
        )
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{source} is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"{source} ({image.format}) is corrupt or truncated: {exc}") from None
    return fix_image(image) if fix else image


def decode_base64_image(data: str, *, max_pixels: int, fix: bool = True) -> Image.Image:
    """Decode a base64 image, with or without a ``data:image/...;base64,`` prefix (spec §2.2).

    Raises :class:`InvalidBase64Error`, :class:`NotAnImageError`, :class:`UnsupportedFormatError`,
    :class:`ImageTooLargeError` or :class:`CorruptImageError` (all :class:`ImageDecodeError`).
    """
    if not isinstance(data, str):
        raise InvalidBase64Error(f"image must be a base64 string; got {type(data).__name__}")
    payload = "".join(_strip_data_url(data).split())
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidBase64Error(f"image is not valid base64 ({exc})") from None
    if not raw:
        raise NotAnImageError(f"image is empty; allowed formats: {_ALLOWED_TEXT}")
    return load_image(io.BytesIO(raw), max_pixels=max_pixels, source="image", fix=fix)


def open_image(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS, fix: bool = True
) -> Image.Image:
    """Open an image file with the checks of :func:`load_image`; errors name the path."""
    p = Path(path)
    if not p.exists():
        raise ImageNotFoundError(f"no such file: {p}")
    if not p.is_file():
        raise ImageNotFoundError(f"not a file: {p}")
    try:
        with p.open("rb") as fp:
            return load_image(fp, max_pixels=max_pixels, source=str(p), fix=fix)
    except PermissionError:
        raise ImageNotFoundError(f"cannot read {p}: permission denied") from None


def fix_image(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation; make RGB/P images with byte-string transparency RGBA (spec §2.2).

    Like A1111, a broken EXIF block leaves the image as it is. Never modifies ``image`` in place.
    """
    try:
        fixed = ImageOps.exif_transpose(image)
    except Exception:  # broken EXIF: A1111 swallows the error and keeps the image
        fixed = image
    if fixed is None:
        fixed = image
    if fixed.mode in ("RGB", "P") and isinstance(fixed.info.get("transparency"), bytes):
        fixed = fixed.convert("RGBA")
    return fixed


def encode_png(image: Image.Image, infotext: str | None = None) -> bytes:
    """PNG bytes of ``image``, with ``infotext`` in a ``parameters`` text chunk when given (spec §6.4)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=png_info(infotext))
    return buf.getvalue()


def encode_png_base64(image: Image.Image, infotext: str | None = None) -> str:
    """Base64 (no data-URL prefix, as A1111's API returns) of :func:`encode_png`."""
    return base64.b64encode(encode_png(image, infotext)).decode("ascii")
