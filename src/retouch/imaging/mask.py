"""Inpainting masks: single-channel conversion, inversion, blur, crop region, latent masks (spec §2.4-§2.9).

Convention everywhere: an 8-bit mask value ``m`` in [0, 255], 255 = "inpaint here", 0 = keep.
Functions that accept an already single-channel mask take PIL mode ``L`` (or ``RGB`` / ``1``, which the
resize helpers and callers produce, converted with PIL's ``L`` rule; for equal channels that is exact).
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "blur_kernel_size",
    "MASK_ALPHA_MODES",
    "mask_transparency",
    "to_single_channel_mask",
    "invert_mask",
    "blur_mask",
    "crop_region",
    "expand_crop_region",
    "whole_picture_overlay_mask",
    "latent_mask_values",
    "conditioning_mask",
]

_MASK_MODES = ("L", "RGB", "1")


def as_l(mask: Image.Image) -> Image.Image:
    """The mask as PIL ``L``; rejects modes whose meaning as a mask is ambiguous (RGBA, P, ...)."""
    if mask.mode not in _MASK_MODES:
        raise ValueError(
            f"mask mode must be one of {', '.join(_MASK_MODES)} (use to_single_channel_mask for other "
            f"modes); got {mask.mode!r}"
        )
    return mask if mask.mode == "L" else mask.convert("L")


def blur_kernel_size(sigma: float) -> int:
    """OpenCV kernel length for mask blur ``sigma``: ``2*int(2.5*sigma + 0.5) + 1`` (spec §2.5)."""
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0; got {sigma!r}")
    return 2 * int(2.5 * sigma + 0.5) + 1


#: How a mask image becomes one channel (``Img2Img.mask_alpha``; spec soft-masks.md §4 G4).
MASK_ALPHA_MODES = ("a1111", "auto", "alpha", "luminance")

#: Modes whose transparency PIL keeps in an alpha band; P, L and RGB carry it as a ``transparency`` entry.
_ALPHA_BANDS = ("RGBA", "LA", "PA", "RGBa", "La")


def mask_transparency(mask: Image.Image) -> Image.Image | None:
    """The mask's transparency as mode ``L`` (255 = opaque), or None when the image carries none.

    Alpha bands (RGBA, LA, PA, RGBa, La) are read directly; P, L and RGB with a ``transparency`` entry
    (a palette alpha table, one transparent index, or a colour key) are read through PIL's RGBA conversion.
    """
    if mask.mode in _ALPHA_BANDS:
        return mask.getchannel("A")
    if mask.mode in ("P", "L", "RGB") and "transparency" in mask.info:
        return mask.convert("RGBA").getchannel("A")
    return None


def _threshold(alpha: Image.Image, round: bool) -> Image.Image:
    return alpha.point(lambda v: 255 if v > 128 else 0) if round else alpha


def to_single_channel_mask(mask: Image.Image, round: bool, alpha: str = "a1111") -> Image.Image:
    """The mask as one channel, mode ``L``, 255 = inpaint; ``alpha`` picks the source (spec §2.4, G4).

    * "a1111" (default, A1111's rule): an RGBA mask whose alpha is not uniformly 255 uses its alpha;
      anything else, LA, PA and P/RGB with a transparency entry included, becomes PIL luminance ``L``.
    * "auto": the transparency of any mode that carries one (:func:`mask_transparency`) when it is not
      uniformly 255, else luminance: an alpha-only mask over black pixels is not read as empty.
    * "alpha": always the transparency (255 = inpaint); a mask without one raises ValueError.
    * "luminance": always PIL luminance, ignoring any alpha (also for RGBA).

    An alpha source is thresholded ``> 128`` to 0/255 when ``round``; luminance is never thresholded.
    """
    if alpha not in MASK_ALPHA_MODES:
        raise ValueError(f"mask alpha mode must be one of {', '.join(MASK_ALPHA_MODES)}; got {alpha!r}")
    if alpha == "a1111":
        if mask.mode == "RGBA" and mask.getchannel("A").getextrema() != (255, 255):
            return _threshold(mask.getchannel("A"), round)
        return mask.convert("L")
    if alpha == "luminance":
        return mask.convert("L")
    transparency = mask_transparency(mask)
    if alpha == "alpha":
        if transparency is None:
            raise ValueError(
                f"mask_alpha 'alpha' needs a mask with transparency (modes {', '.join(_ALPHA_BANDS)}, or P, L, "
                f"RGB with a transparency entry); got mode {mask.mode!r} without one (use 'a1111', 'auto' or "
                "'luminance')"
            )
        return _threshold(transparency, round)
    if transparency is not None and transparency.getextrema() != (255, 255):
        return _threshold(transparency, round)
    return mask.convert("L")


def invert_mask(mask: Image.Image) -> Image.Image:
    """``255 - m`` ("Inpaint not masked", spec §2.4); returns mode ``L``."""
    return ImageOps.invert(as_l(mask))


def blur_mask(mask: Image.Image, sigma_x: int, sigma_y: int) -> Image.Image:
    """Separable Gaussian blur of an 8-bit mask with OpenCV, x pass then y pass (spec §2.5).

    Each pass is ``cv2.GaussianBlur`` on uint8 with a 1-D kernel of length ``blur_kernel_size(sigma)``
    and OpenCV's default border (BORDER_REFLECT_101); a sigma of 0 skips that axis. Returns mode ``L``.
    """
    for name, sigma in (("sigma_x", sigma_x), ("sigma_y", sigma_y)):
        if isinstance(sigma, bool) or not isinstance(sigma, int) or sigma < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {sigma!r}")
    values: np.ndarray = np.array(as_l(mask), dtype=np.uint8)
    if sigma_x > 0:
        values = cv2.GaussianBlur(values, (blur_kernel_size(sigma_x), 1), sigma_x)
    if sigma_y > 0:
        values = cv2.GaussianBlur(values, (1, blur_kernel_size(sigma_y)), sigma_y)
    return Image.fromarray(values, mode="L")


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x1, y1, x2, y2)`` (x2, y2 exclusive) of the non-zero pixels, padded and clipped.

    Spec §2.6 step 2. Returns None for an all-zero mask (A1111 then drops the mask entirely).
    """
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer; got {padding!r}")
    box = as_l(mask).getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    w, h = mask.size
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, w), min(y2 + padding, h)


def _expand_axis(lo: int, hi: int, delta: int, limit: int) -> tuple[int, int]:
    """Grow ``[lo, hi)`` by ``delta`` split around it, shift it back inside ``[0, limit]``, clamp."""
    lo -= delta // 2
    hi += delta - delta // 2
    if hi >= limit:
        shift = hi - limit
        hi, lo = hi - shift, lo - shift
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi >= limit:
        hi = limit
    return lo, hi


def expand_crop_region(
    box: tuple[int, int, int, int], width: int, height: int, image_width: int, image_height: int
) -> tuple[int, int, int, int]:
    """Grow a crop box to the processing aspect ``width:height`` inside the image (spec §2.6 step 3).

    The short dimension grows by ``int(cw/r - ch)`` (or ``int(ch*r - cw)``), split half above/left,
    then the box is shifted back inside the image and, if still too large, clamped (its aspect then no
    longer equals ``width:height``). Example: (100, 200, 228, 232), 512x512, image 1024x1024 ->
    (100, 152, 228, 280).
    """
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= image_width and 0 <= y1 < y2 <= image_height):
        raise ValueError(
            f"crop box {box} must be non-empty and inside the {image_width}x{image_height} image"
        )
    if width < 1 or height < 1:
        raise ValueError(f"processing size must be positive; got {width}x{height}")
    ratio = width / height
    cw, ch = x2 - x1, y2 - y1
    if cw / ch > ratio:
        y1, y2 = _expand_axis(y1, y2, int(cw / ratio - ch), image_height)
    else:
        x1, x2 = _expand_axis(x1, x2, int(ch * ratio - cw), image_width)
    return x1, y1, x2, y2


def whole_picture_overlay_mask(mask: Image.Image) -> Image.Image:
    """Overlay mask for "Whole picture": ``clip(2m, 0, 255)`` on the resized mask (spec §2.7); mode ``L``."""
    values = np.asarray(as_l(mask), dtype=np.float32)
    return Image.fromarray(np.clip(values * 2, 0, 255).astype(np.uint8), mode="L")


def latent_mask_values(mask: Image.Image, latent_width: int, latent_height: int, round: bool) -> np.ndarray:
    """Per-latent-pixel generate weight, float32 ``(latent_height, latent_width)``, 1 = generate (spec §2.9).

    The mask is converted to RGB (channel 0 of an RGB mask is its red channel), resized with PIL's default filter (bicubic, antialiased when
    shrinking) to the latent size, channel 0 divided by 255 and, when ``round``, rounded half-to-even.
    The keep-mask is ``1 - values``.
    """
    if latent_width < 1 or latent_height < 1:
        raise ValueError(f"latent size must be positive; got {latent_width}x{latent_height}")
    as_l(mask)  # validates the mode
    rgb = mask.convert("RGB")
    small = rgb.resize((latent_width, latent_height), resample=Image.Resampling.BICUBIC)
    values = np.asarray(small, dtype=np.float32)[:, :, 0] / np.float32(255)
    if round:
        values = np.round(values)
    return values.astype(np.float32)


def conditioning_mask(mask: Image.Image, round: bool) -> np.ndarray:
    """Inpainting-model conditioning mask, float32 ``(H, W)`` in [0, 1] (spec §4.1 step 1).

    The processing mask as ``L`` divided by 255; rounded to {0, 1} (half-to-even) when ``round``.
    """
    values = np.asarray(as_l(mask), dtype=np.float32) / np.float32(255)
    if round:
        values = np.round(values)
    return values.astype(np.float32)
