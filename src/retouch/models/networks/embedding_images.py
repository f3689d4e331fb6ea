"""Textual-inversion embeddings stored in images, as A1111 writes them (spec a1111-prompts.md §4.2).

A1111 saves a trained embedding inside a preview PNG in two ways, and reads both back
(``modules/textual_inversion/image_embedding.py``, read for the layout; this is our own code):

* a PNG text chunk ``sd-ti-embedding``: base64 of the embedding's JSON, where a tensor is written as
  ``{"TORCHTENSOR": nested list}``;
* pixel-encoded data: the JSON, zlib-compressed (level 9), split into low and high nibbles. Each nibble
  stream is repeated cyclically (``numpy.resize``) to fill ``H x W x 3`` values, ``H`` the picture's
  height (the count is rounded up past the next multiple of ``H``, then past the next multiple of
  ``3H``, so there is always some padding), and laid out row-major
  (row, column, RGB channel). Each block's low nibbles are XOR-ed with a linear congruential stream
  (``a=1664525, c=1013904223, m=2**32``, seed 0, each state mod 255, masked to 4 bits); its high
  nibbles carry a decoration that the reader ignores (A1111 draws grey dots; we draw grey squares).
  The picture is then ``[low block][black column][image][black column][high block]``.

  Reading: crop to the bounding box of the pixels whose three channels are all non-zero, keep the low
  nibbles, find the columns whose low nibbles are all zero (the two separators; the leftmost and the
  rightmost are used), XOR the blocks left of the first and right of the last with the stream again,
  and join ``high << 4 | low``. zlib stops at the end of its stream, so the cyclic padding is ignored.

Pure functions of images and bytes (and one reader of an image file); the tensors come back as float32 ``torch`` tensors.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "TEXT_CHUNK_KEY",
    "lcg_stream",
    "dumps_embedding_json",
    "loads_embedding_json",
    "decode_text_chunk",
    "encode_text_chunk",
    "decode_pixel_embedding",
    "encode_pixel_embedding",
    "read_image_embedding",
]

TEXT_CHUNK_KEY = "sd-ti-embedding"
_TENSOR_KEY = "TORCHTENSOR"
_LCG_A, _LCG_C, _LCG_M = 1664525, 1013904223, 2**32
_CHANNELS = 3


def lcg_stream(count: int) -> np.ndarray:
    """The first ``count`` values (uint8, 0-254) of A1111's LCG: state ``(a*s + c) mod 2**32`` from 0, mod 255."""
    values = np.empty(count, dtype=np.uint8)
    state = 0
    for i in range(count):
        state = (_LCG_A * state + _LCG_C) % _LCG_M
        values[i] = state % 255
    return values


def _tensor_hook(obj: dict[str, Any]) -> Any:
    if _TENSOR_KEY in obj:
        return torch.tensor(obj[_TENSOR_KEY], dtype=torch.float32)
    return obj


def _tensor_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return {_TENSOR_KEY: obj.detach().cpu().tolist()}
    raise TypeError(f"cannot write a {type(obj).__name__} into embedding JSON")


def loads_embedding_json(text: str | bytes) -> Any:
    """JSON with ``{"TORCHTENSOR": nested list}`` objects turned into float32 tensors."""
    return json.loads(text, object_hook=_tensor_hook)


def dumps_embedding_json(data: Any) -> str:
    """The inverse of :func:`loads_embedding_json`: tensors written as ``{"TORCHTENSOR": nested list}``."""
    return json.dumps(data, default=_tensor_default)


def decode_text_chunk(value: str | bytes) -> Any:
    """The embedding data of an ``sd-ti-embedding`` PNG text chunk (base64 of the JSON)."""
    try:
        raw = base64.b64decode(value, validate=False)
        return loads_embedding_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the {TEXT_CHUNK_KEY!r} text chunk is not base64 JSON: {exc}") from None


def encode_text_chunk(data: Any) -> str:
    """The ``sd-ti-embedding`` text-chunk value for ``data`` (base64 of the JSON, ASCII)."""
    return base64.b64encode(dumps_embedding_json(data).encode()).decode("ascii")


def _toggle_stream(block: np.ndarray) -> np.ndarray:
    """XOR the low nibbles of ``block`` (uint8, any shape) with the LCG stream in row-major order."""
    stream = lcg_stream(block.size).reshape(block.shape) & 0x0F
    return np.bitwise_xor(block.astype(np.uint8), stream)


def _crop_to_content(rgb: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels whose three channels are all non-zero (all of ``rgb`` if none are)."""
    content: np.ndarray = np.all(rgb > 0, axis=2)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return rgb
    return rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def decode_pixel_embedding(image: Image.Image) -> Any | None:
    """The embedding data hidden in ``image``'s pixels, or None when it has no such layout.

    Raises ValueError when the layout is there but the payload is not zlib-compressed JSON.
    """
    nibbles = _crop_to_content(np.asarray(image.convert("RGB"), dtype=np.uint8)) & 0x0F
    separators = np.flatnonzero(nibbles.sum(axis=(0, 2)) == 0)
    if separators.size < 2:
        return None
    low, high = nibbles[:, : separators[0]], nibbles[:, separators[-1] + 1 :]
    if low.size == 0 or low.shape != high.shape:
        return None
    payload = ((_toggle_stream(high) << 4) | _toggle_stream(low)).tobytes()
    try:
        return loads_embedding_json(zlib.decompress(payload))
    except (zlib.error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"pixel-encoded embedding data is damaged: {exc}") from None


def _block_length(count: int, height: int) -> int:
    """A1111's block size for ``count`` nibbles: past the next multiple of ``height``, then of ``3*height``."""
    size = count + height - count % height
    return size + height * _CHANNELS - size % (height * _CHANNELS)


def _decoration(height: int, width: int, shades: Sequence[int]) -> np.ndarray:
    """Grey 4x4 squares in a checkerboard, shades taken in turn, as high nibbles: ``(H, W, 3)`` uint8.

    Purely cosmetic (the reader ignores high nibbles of the data blocks); A1111 draws grey dots instead.
    """
    y, x = np.mgrid[0:height, 0:width]
    cell = (y // 4) * ((width + 3) // 4) + x // 4
    palette = np.asarray([int(s) for s in shades], dtype=np.uint8) & 0xF0
    grey = np.where((y // 4 + x // 4) % 2 == 0, palette[cell % palette.size], 0).astype(np.uint8)
    return np.repeat(grey[:, :, None], _CHANNELS, axis=2)


def _nibble_block(nibbles: np.ndarray, height: int, shades: Sequence[int]) -> np.ndarray:
    block = np.resize(nibbles, _block_length(nibbles.size, height)).reshape(height, -1, _CHANNELS)
    return _toggle_stream(block) | _decoration(block.shape[0], block.shape[1], shades)


def encode_pixel_embedding(image: Image.Image, data: Any, shades: Sequence[int] = (255,)) -> Image.Image:
    """``image`` with ``data`` pixel-encoded beside it in A1111's layout (module docstring).

    ``shades`` (0-255) colour the decoration; A1111 takes them from the first vector's normalised magnitudes.
    """
    if not shades or any(not 0 <= int(s) <= 255 for s in shades):
        raise ValueError(f"shades must be a non-empty sequence of values in 0-255, got {list(shades)[:8]}")
    payload = np.frombuffer(zlib.compress(dumps_embedding_json(data).encode(), level=9), dtype=np.uint8)
    height = image.height
    low = _nibble_block(payload & 0x0F, height, shades)
    high = _nibble_block(payload >> 4, height, list(shades)[::-1])
    side = low.shape[1]
    canvas = Image.new("RGB", (image.width + 2 * side + 2, height), (0, 0, 0))
    canvas.paste(Image.fromarray(low), (0, 0))
    canvas.paste(image.convert("RGB"), (side + 1, 0))
    canvas.paste(Image.fromarray(high), (side + 1 + image.width + 1, 0))
    return canvas


def read_image_embedding(path: str | os.PathLike[str]) -> Any:
    """The embedding data in the image file at ``path``: its text chunk if it has one, else its pixels.

    Raises ValueError when the file is no image PIL can open, or holds no embedding data.
    """
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}) or {}
            if TEXT_CHUNK_KEY in text:
                return decode_text_chunk(text[TEXT_CHUNK_KEY])
            data = decode_pixel_embedding(image)
    except (OSError, SyntaxError) as exc:  # PIL's errors for files it cannot decode
        raise ValueError(f"cannot open the image: {exc}") from None
    if data is None:
        raise ValueError(f"an image without embedding data (no {TEXT_CHUNK_KEY!r} text chunk, no pixel-encoded data)")
    return data
