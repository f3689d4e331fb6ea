"""Images and metadata in and out: base64/file decoding with clear errors, PNG with infotext (spec §2.2, §6.4).

Used by the shells (CLI, server); the engine never imports this package.
"""

from retouch.formats.images import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode_base64_image,
    encode_png,
    encode_png_base64,
    fix_image,
    open_image,
)
from retouch.formats.png import read_infotext, save_png

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "decode_base64_image",
    "encode_png",
    "encode_png_base64",
    "fix_image",
    "open_image",
    "read_infotext",
    "save_png",
]
