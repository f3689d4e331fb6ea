"""Resizing to the processing size: A1111's four ``resize_mode`` values (spec §2.3).

All arithmetic is integer floor division exactly as the spec states, and the "resize to exactly (a, b)"
step is PIL LANCZOS (no upscaler model: ``upscaler_for_img2img`` is None by default). Modes 1 and 2
return an RGB image even for an ``L`` input, as A1111 does.
"""

from __future__ import annotations

import math

from PIL import Image

from retouch.params import ParamError, ResizeMode

__all__ = ["resize_image", "scaled_size"]


def _mode(mode: ResizeMode | int) -> ResizeMode:
    allowed = ", ".join(f"{m.value} ({m.name})" for m in ResizeMode)
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise ParamError(f"resize_mode must be one of {allowed}; got {mode!r}")
    try:
        return ResizeMode(mode)
    except ValueError:
        raise ParamError(f"resize_mode must be one of {allowed}; got {mode!r}") from None


def _check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")


def _lanczos(image: Image.Image, width: int, height: int) -> Image.Image:
    if width < 1 or height < 1:
        raise ValueError(
            f"cannot fit a {image.width}x{image.height} image to the target: its aspect ratio is so different "
            f"that the scaled image would be {width}x{height} pixels"
        )
    return image.resize((width, height), resample=Image.Resampling.LANCZOS)


def _crop_and_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """Mode 1: scale to cover ``width x height``, centre, crop the overflow (spec §2.3)."""
    w, h = image.size
    if width / height > w / h:
        sw, sh = width, h * width // w
    else:
        sw, sh = w * height // h, height
    canvas = Image.new("RGB", (width, height))
    canvas.paste(_lanczos(image, sw, sh), (width // 2 - sw // 2, height // 2 - sh // 2))
    return canvas


def _resize_and_fill(image: Image.Image, width: int, height: int) -> Image.Image:
    """Mode 2: fit inside, then fill the bars by stretching the edge rows/columns (spec §2.3).

    The bands come from PIL's default resampler (bicubic) applied to a zero-thickness source box at
    the edge, as in A1111; this is close to, but not exactly, edge replication (the resampler's support
    reaches one or two rows/columns inwards).
    """
    w, h = image.size
    ratio, src_ratio = width / height, w / h
    if ratio < src_ratio:
        sw, sh = width, h * width // w
    else:
        sw, sh = w * height // h, height
    resized = _lanczos(image, sw, sh)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(resized, (width // 2 - sw // 2, height // 2 - sh // 2))
    if ratio < src_ratio:
        fill = height // 2 - sh // 2
        if fill > 0:
            top = resized.resize((width, fill), box=(0, 0, width, 0))
            bottom = resized.resize((width, fill), box=(0, sh, width, sh))
            canvas.paste(top, (0, 0))
            canvas.paste(bottom, (0, fill + sh))
    elif ratio > src_ratio:
        fill = width // 2 - sw // 2
        if fill > 0:
            left = resized.resize((fill, height), box=(0, 0, 0, height))
            right = resized.resize((fill, height), box=(sw, 0, sw, height))
            canvas.paste(left, (0, 0))
            canvas.paste(right, (fill + sw, 0))
    return canvas


def resize_image(image: Image.Image, mode: ResizeMode | int, width: int, height: int) -> Image.Image:
    """Resize ``image`` to ``width x height`` with A1111 resize mode ``mode`` (spec §2.3).

    * 0 JUST_RESIZE: LANCZOS stretch; the image keeps its PIL mode.
    * 1 CROP_AND_RESIZE: cover and centre-crop; returns RGB.
    * 2 RESIZE_AND_FILL: fit and fill the bars from the edges; returns RGB.
    * 3 LATENT_UPSCALE: behaves like 2 here, as A1111's helper does (the latent resize of the init
      image is the engine's business, not this function's).

    Raises ParamError for an unknown mode and ValueError for a non-positive size or an empty image.
    """
    resize_mode = _mode(mode)
    _check_size(width, height)
    if image.width < 1 or image.height < 1:
        raise ValueError(f"cannot resize an empty image of size {image.size}")
    if resize_mode == ResizeMode.JUST_RESIZE:
        return _lanczos(image, width, height)
    if resize_mode == ResizeMode.CROP_AND_RESIZE:
        return _crop_and_resize(image, width, height)
    return _resize_and_fill(image, width, height)


def scaled_size(width: int, height: int, scale_by: float) -> tuple[int, int]:
    """Processing size for the UI's "Resize by" tab: ``(int(w*s), int(h*s))``, truncated (spec §2.3).

    No rounding to multiples of 8 happens. Raises ParamError when ``scale_by`` is not a positive finite
    number or the result has a zero side.
    """
    if isinstance(scale_by, bool) or not isinstance(scale_by, int | float) or not math.isfinite(scale_by):
        raise ParamError(f"scale_by must be a positive finite number; got {scale_by!r}")
    if scale_by <= 0:
        raise ParamError(f"scale_by must be a positive finite number; got {scale_by!r}")
    _check_size(width, height)
    size = (int(width * scale_by), int(height * scale_by))
    if size[0] < 1 or size[1] < 1:
        raise ParamError(
            f"scale_by={scale_by!r} turns {width}x{height} into {size[0]}x{size[1]}; both sides must be >= 1"
        )
    return size
