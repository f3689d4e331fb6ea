"""Peer reference algorithms: how InvokeAI and Fooocus shape inpainting masks (spec soft-masks.md §2.5, §3).

Used for comparison (tests C16-C19, C21; figures that put Retouch's seam options beside the peers') and
available as building blocks for optional mask modes; no Retouch job field calls them, so A1111 parity
is untouched. Each function is written from the spec's prose description of the peer's behaviour, not
from the peer's code, and is pure (numpy in, numpy out).

* :func:`invokeai_gradient_mask` - InvokeAI's "create gradient mask" node (v1.3.0): a weighted max-filter
  expansion of the inpaint area at latent size, with Box / Gaussian / Staged kernels and a minimum
  denoise; its ``edge_radius`` is in image px and only whole latent px count (``edge_radius // 8``).
* :func:`invokeai_fade` - InvokeAI's paste-back fade (``expand_mask_with_fade``): a cubic of the
  normalised L2 distance from the generated region.
* :func:`fooocus_ramp` - Fooocus's final blend weight (``morphological_open``): a linear ramp of
  8 levels per px of Chebyshev distance outside the binary mask, 32 px wide.
* :func:`fooocus_respective_field` - Fooocus's crop box ("Inpaint Respective Field" k in [0, 1]).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

__all__ = [
    "GradientMode",
    "invokeai_kernel",
    "invokeai_gradient_mask",
    "invokeai_fade_curve",
    "invokeai_fade",
    "fooocus_ramp",
    "fooocus_initial_box",
    "fooocus_respective_field",
]

GradientMode = Literal["box", "gaussian", "staged"]
_GRADIENT_MODES = ("box", "gaussian", "staged")


def invokeai_kernel(radius: int, mode: GradientMode) -> np.ndarray:
    """(2r+1)² float64 weights, 1 at the centre, 0 beyond Euclidean distance ``radius`` (latent px).

    "box": the cone ``1 - d/r``; "gaussian"/"staged": a Gaussian of σ = r/2.5 normalised to 1 at the
    centre (the outer product of OpenCV's ``getGaussianKernel(2r+1, r/2.5)``, rescaled).
    """
    if mode not in _GRADIENT_MODES:
        raise ValueError(f"gradient mode must be one of {', '.join(_GRADIENT_MODES)}; got {mode!r}")
    if radius < 1:
        raise ValueError(f"kernel radius must be >= 1 latent px; got {radius!r}")
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float64)
    d = np.hypot(x, y)
    if mode == "box":
        return np.clip(1 - d / radius, 0, None)
    sigma = radius / 2.5
    return np.where(d <= radius, np.exp(-(x * x + y * y) / (2 * sigma * sigma)), 0.0)


def _weighted_max(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``max over cells of shifted(values)·weight`` with zero padding, float64."""
    r = kernel.shape[0] // 2
    h, w = values.shape
    padded = np.pad(values.astype(np.float64), r)
    out = np.zeros((h, w), np.float64)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            if kernel[dy, dx] > 0:
                out = np.maximum(out, padded[dy : dy + h, dx : dx + w] * kernel[dy, dx])
    return out


def invokeai_gradient_mask(
    keep: np.ndarray, edge_radius: int, mode: GradientMode = "gaussian", minimum_denoise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """InvokeAI's gradient denoise mask and its expanded paste area, both uint8 at latent size.

    ``keep``: uint8 (h, w) at latent size, 255 = keep, 0 = inpaint (InvokeAI's polarity; its node makes
    it by a bilinear 1/8 resize of the image-size mask). ``edge_radius``: px at image size; the kernel
    radius is ``edge_radius // 8`` latent px, so radii below 8 expand nothing (C17).
    Steps: ``dil = 255 - weighted_max(255 - keep)``; ``thr = (1 - minimum_denoise)·255``; "staged" sets
    pixels with ``dil < keep`` and ``keep > thr`` to thr, else keep, the other modes take dil; then values
    in (thr, 255) become thr (every touched pixel gets at least ``minimum_denoise``); truncated to uint8.
    Returns (denoise mask: 255 = preserved, expanded area: 0 where dil < 255 else 255).
    """
    if keep.ndim != 2 or keep.dtype != np.uint8:
        raise ValueError(f"keep must be a 2-D uint8 array; got {keep.dtype} with shape {keep.shape}")
    if not 0.0 <= minimum_denoise <= 1.0:
        raise ValueError(f"minimum_denoise must be in [0, 1]; got {minimum_denoise!r}")
    if mode not in _GRADIENT_MODES:
        raise ValueError(f"gradient mode must be one of {', '.join(_GRADIENT_MODES)}; got {mode!r}")
    if edge_radius < 0:
        raise ValueError(f"edge_radius must be >= 0 px; got {edge_radius!r}")
    orig = keep.astype(np.float64)
    radius = edge_radius // 8
    dil = orig if radius == 0 else 255 - _weighted_max(255 - orig, invokeai_kernel(radius, mode))
    thr = (1 - minimum_denoise) * 255
    out = np.where((dil < orig) & (orig > thr), thr, orig) if mode == "staged" else dil
    out = np.where((out > thr) & (out < 255), thr, out)
    area = np.where(dil < 255, 0, 255).astype(np.uint8)
    return np.clip(out, 0, 255).astype(np.uint8), area


def invokeai_fade_curve(d_norm: np.ndarray, fade: int) -> np.ndarray:
    """InvokeAI's fade weight of the normalised distance, float64 in [0, 1].

    The least-squares cubic through (0, 0), (1/fade, 0), (0.2, 0.2), (0.8, 0.9), (1, 1), clipped to
    [0, 1] and forced to exactly 1 where ``d_norm >= 1``. Fade 16: coefficients (-1.1142, 1.3299,
    0.8035, -0.0205).
    """
    if fade < 1:
        raise ValueError(f"fade must be >= 1 px; got {fade!r}")
    xs = np.array([0.0, 1.0 / fade, 0.2, 0.8, 1.0])
    ys = np.array([0.0, 0.0, 0.2, 0.9, 1.0])
    coefficients = np.polyfit(xs, ys, 3)
    d = np.asarray(d_norm, dtype=np.float64)
    return np.where(d >= 1, 1.0, np.clip(np.polyval(coefficients, d), 0, 1))


def invokeai_fade(mask: np.ndarray, fade: int) -> np.ndarray:
    """InvokeAI's ``expand_mask_with_fade``: float64 (h, w), 0 on the black (generated) region.

    ``mask``: uint8, thresholded ``> 0`` -> 255; each non-black pixel's L2 distance to the black region,
    divided by ``fade`` and clipped to [0, 1], goes through :func:`invokeai_fade_curve`.
    """
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be a 2-D uint8 array; got {mask.dtype} with shape {mask.shape}")
    white = (mask > 0).astype(np.uint8)
    dist = cv2.distanceTransform(white, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    weight = invokeai_fade_curve(np.clip(dist / fade, 0, 1), fade)
    return np.where(white > 0, weight, 0.0)


def fooocus_ramp(mask: np.ndarray, iterations: int = 32, step: int = 8) -> np.ndarray:
    """Fooocus's blend weight ``w`` (uint8, 255 = generated): ``mask > 127`` -> 256, then ``iterations``
    times ``x = max(x, dilate3x3(x) - step)``, clipped to 255. At Chebyshev distance d outside the mask
    that is ``clip(256 - 8d, 0, 255)``: d = 1 -> 248, 10 -> 176, 31 -> 8, 32 -> 0 (C18)."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be a 2-D uint8 array; got {mask.dtype} with shape {mask.shape}")
    x = np.where(mask > 127, 256, 0).astype(np.float32)  # integers <= 256: exact in float32
    ones = np.ones((3, 3), np.uint8)
    for _ in range(iterations):
        x = np.maximum(x, cv2.dilate(x, ones) - step)  # OpenCV's dilate ignores cells outside the image
    return np.clip(x, 0, 255).astype(np.uint8)


def fooocus_initial_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Fooocus's first crop ``(y1, y2, x1, x2)`` (rows then columns, ends exclusive).

    From the bounding box of ``mask > 0`` (first and last row a..b, column c..d, inclusive): centre
    ``(a + b) // 2``, half-size ``(b - a) // 2`` per axis, ``l = int(max(halves)·1.15)``, the square
    ``[centre - l, centre + l + 1)`` on both axes, clamped to the image.
    """
    rows, cols = np.nonzero(mask > 0)
    if rows.size == 0:
        raise ValueError("mask has no pixel > 0; Fooocus's respective field needs a non-empty mask")
    a, b, c, d = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    half = int(max((b - a) // 2, (d - c) // 2) * 1.15)
    cy, cx = (a + b) // 2, (c + d) // 2
    h, w = mask.shape
    return max(cy - half, 0), min(cy + half + 1, h), max(cx - half, 0), min(cx + half + 1, w)


def fooocus_respective_field(mask: np.ndarray, k: float) -> tuple[int, int, int, int]:
    """Fooocus's crop for respective field ``k`` in [0, 1], as ``(y1, y2, x1, x2)``.

    Starting from :func:`fooocus_initial_box`, one side pair grows by 1 px per side per round (the shorter
    side; the width on a tie, which is my reading of "shorter first"; the other one once a side spans the
    image), each end clamped to the image, until height >= k·H and width >= k·W. k = 1 is the whole image,
    k = 0 the initial box.
    """
    if not 0.0 <= k <= 1.0:
        raise ValueError(f"respective field k must be in [0, 1]; got {k!r}")
    h, w = mask.shape
    if k == 1.0:
        return 0, h, 0, w
    y1, y2, x1, x2 = fooocus_initial_box(mask)
    while y2 - y1 < h * k or x2 - x1 < w * k:
        grow_rows = (y2 - y1) < (x2 - x1) or x2 - x1 == w
        if y2 - y1 == h:
            grow_rows = False
        if grow_rows:
            y1, y2 = max(y1 - 1, 0), min(y2 + 1, h)
        else:
            x1, x2 = max(x1 - 1, 0), min(x2 + 1, w)
    return y1, y2, x1, x2
