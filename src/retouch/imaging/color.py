"""Colour correction: LAB histogram matching plus a luminosity blend (spec §2.13).

A1111 uses scikit-image 0.21's ``exposure.match_histograms(..., channel_axis=2)`` and blendmodes 2022's
``blendLayers(..., BlendType.LUMINOSITY)``. Both are small algorithms, so they are written here by hand
(about 15 lines each) instead of pulling in scikit-image and blendmodes as dependencies. The numerics
follow those versions: the histogram match interpolates cumulative quantiles in float64 and stores the
result into uint8 (truncation); the blend works in float64 on ``value/255`` with Rec.601 weights and the
W3C ClipColor, and converts back with ``uint8(clip(x, 0, 1)*255)``, which truncates as blendmodes 2022 does.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

__all__ = ["color_reference", "apply_color_correction", "match_histograms", "luminosity_blend"]


def _rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def color_reference(image: Image.Image) -> np.ndarray:
    """The colour-correction reference: the processing image as 8-bit LAB, uint8 ``(H, W, 3)`` (spec §2.13).

    OpenCV's RGB->LAB for uint8 (L scaled to 0-255, a and b offset by 128).
    """
    return cv2.cvtColor(_rgb_array(image), cv2.COLOR_RGB2LAB)


def _match_channel(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Map uint8 ``source`` so its cumulative histogram follows ``template``'s (skimage 0.21 semantics)."""
    src_counts = np.bincount(source.ravel(), minlength=256)
    tmpl_counts = np.bincount(template.ravel(), minlength=256)
    tmpl_values = np.flatnonzero(tmpl_counts)
    src_quantiles = np.cumsum(src_counts) / source.size
    tmpl_quantiles = np.cumsum(tmpl_counts[tmpl_values]) / template.size
    lookup = np.interp(src_quantiles, tmpl_quantiles, tmpl_values)
    # skimage stores the float64 result into a uint8 array: a C cast, i.e. truncation (values are >= 0).
    return lookup.astype(np.uint8)[source]


def match_histograms(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching of uint8 ``(H, W, C)`` ``image`` to ``reference``; uint8 out.

    Equivalent to scikit-image 0.21 ``exposure.match_histograms(image, reference, channel_axis=2)`` for
    uint8 inputs. The two arrays may differ in height and width but not in channel count.
    """
    if image.dtype != np.uint8 or reference.dtype != np.uint8:
        raise ValueError(f"histogram matching needs uint8 arrays; got {image.dtype} and {reference.dtype}")
    if image.ndim != 3 or reference.ndim != 3 or image.shape[2] != reference.shape[2]:
        raise ValueError(
            f"image and reference must be (H, W, C) with the same C; got {image.shape} and {reference.shape}"
        )
    channels = [_match_channel(image[:, :, c], reference[:, :, c]) for c in range(image.shape[2])]
    return np.stack(channels, axis=2)


def _lum(rgb: np.ndarray) -> np.ndarray:
    return rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114


def _set_lum(rgb: np.ndarray, lum: np.ndarray) -> np.ndarray:
    """W3C SetLum then ClipColor on float ``(H, W, 3)`` colours in [0, 1]."""
    c = rgb + (lum - _lum(rgb))[:, :, None]
    lum_c = _lum(c)[:, :, None]
    low = c.min(axis=2, keepdims=True)
    high = c.max(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lifted = lum_c + (c - lum_c) * lum_c / (lum_c - low)
        c = np.where((low < 0) & (lum_c != low), lifted, c)
        lowered = lum_c + (c - lum_c) * (1 - lum_c) / (high - lum_c)
        c = np.where((high > 1) & (high != lum_c), lowered, c)
    return c


def luminosity_blend(background: Image.Image, foreground: Image.Image) -> Image.Image:
    """Keep ``background``'s hue and saturation with ``foreground``'s luminosity (blend mode LUMINOSITY).

    Both images are opaque RGB of one size; returns RGB. Rec.601 luma weights, W3C ClipColor, output
    ``uint8(clip(x, 0, 1)*255)`` (truncation, as blendmodes 2022).
    """
    if background.size != foreground.size:
        raise ValueError(
            f"background size {background.size} and foreground size {foreground.size} must match"
        )
    back = _rgb_array(background) / 255
    front = _rgb_array(foreground) / 255
    blended = _set_lum(back, _lum(front))
    return Image.fromarray((np.clip(blended, 0, 1) * 255).astype(np.uint8), mode="RGB")


def apply_color_correction(reference: np.ndarray, image: Image.Image) -> Image.Image:
    """Colour-correct a generated ``image`` towards a :func:`color_reference` (spec §2.13); RGB out.

    The image's 8-bit LAB channels are histogram-matched to the reference's, converted back to RGB,
    and then luminosity-blended: the matched colours (background) take the generated image's
    luminosity (foreground).
    """
    if reference.dtype != np.uint8 or reference.ndim != 3 or reference.shape[2] != 3:
        raise ValueError(
            f"reference must be a uint8 LAB array (H, W, 3); got {reference.dtype} {reference.shape}"
        )
    lab = cv2.cvtColor(_rgb_array(image), cv2.COLOR_RGB2LAB)
    matched = cv2.cvtColor(match_histograms(lab, reference), cv2.COLOR_LAB2RGB)
    return luminosity_blend(Image.fromarray(matched, mode="RGB"), image)
