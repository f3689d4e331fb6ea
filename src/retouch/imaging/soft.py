"""A1111 soft inpainting's pixel composite from the latent difference, vectorised (spec soft-masks.md §1.6).

After sampling, the per-latent-pixel distance ``D = |samples - init_latent|`` (over channels) is
smoothed by two weighted-percentile filters with a 5x5 tapered Gaussian kernel (a soft maximum, then a
weighted inter-quartile mean), turned into an opacity by ``1 - smootherstep(1 / (1 + (D/half)^contrast))``,
truncated to uint8, LANCZOS-resized to the processing size, blurred with PIL's GaussianBlur(4) and, for
"Only masked", uncropped to the full image. The overlay is the hole-free original with alpha ``255 - M``.

A1111 filters with a per-pixel Python loop (seconds per megapixel); here every pixel's window is gathered
at once and sorted along the window axis (G5). Windows are clipped at the array border, as in A1111
(Forge's zero-padded copy differs, §1.9). Pure numpy/PIL: the engine computes ``D`` and passes arrays.

A1111's alternative ``apply_masks`` (used when the sampler returned already-decoded images, with a mask
``nmask ** (scale/2)``) is not implemented: no Retouch path produces decoded samples (every sampler
returns latents, which ``Engine._finish_batch`` decodes after this composite), and in A1111 it indexes
an empty list and raises, so no A1111 output depends on it either (spec §1.6).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from retouch.imaging.composite import uncrop
from retouch.imaging.resize import resize_image
from retouch.params import ResizeMode, SoftInpainting

__all__ = [
    "gaussian_kernel",
    "weighted_histogram_filter",
    "smootherstep",
    "difference_opacity",
    "soft_composite_mask",
]


def gaussian_kernel(stddev_radius: float = 1.5, max_radius: int = 2) -> np.ndarray:
    """A1111 ``get_gaussian_kernel``: ``max(0, (g(r²) - g0) / (1 - g0))``, ``g(r²) = exp(-r²/s²)``,
    ``g0 = g((max_radius + 1)²)``; float64 ``(2R+1, 2R+1)``, centre 1 (spec §1.6 step 3, C6)."""
    r = np.arange(-max_radius, max_radius + 1, dtype=np.float64)
    sq = r[:, None] ** 2 + r[None, :] ** 2
    g0 = math.exp(-((max_radius + 1.0) ** 2) / stddev_radius**2)
    return np.maximum(0.0, (np.exp(-sq / stddev_radius**2) - g0) / (1.0 - g0))


def _windows(img: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's window values (float32) and weights (float64), (h*w, K); cells outside the
    array get weight 0 (A1111 clips windows at the border)."""
    h, w = img.shape
    kh, kw = kernel.shape
    pad = ((kh // 2, kh // 2), (kw // 2, kw // 2))
    view = np.lib.stride_tricks.sliding_window_view
    values = view(np.pad(img.astype(np.float32), pad), (kh, kw)).reshape(h * w, kh * kw)
    valid = view(np.pad(np.ones((h, w)), pad), (kh, kw)).reshape(h * w, kh * kw)
    return values, valid * kernel.reshape(1, -1)


def weighted_histogram_filter(
    img: np.ndarray, kernel: np.ndarray, percentile_min: float, percentile_max: float, min_width: float = 1.0
) -> np.ndarray:
    """A1111 ``weighted_histogram_filter`` (spec §1.6 step 3, C7), float32 ``(h, w)`` in and out.

    Per pixel: the window's values sorted, their weights laid end to end on [0, S]; the window
    ``[S*p_min, S*p_max]``, widened to ``min_width`` about its centre and shifted back inside (top end
    first, then bottom) when narrower; result = mean of the values weighted by their overlap with it.
    Equal values may sort in any order: their intervals are adjacent, so the result is the same.
    """
    values, weights = _windows(np.asarray(img, dtype=np.float32), kernel)
    order = np.argsort(values, axis=1)
    order += np.arange(0, order.size, order.shape[1])[:, None]  # flat indices: faster than take_along_axis
    values = values.ravel()[order]
    top = np.cumsum(weights.ravel()[order], axis=1)
    bottom = np.empty_like(top)
    bottom[:, 0], bottom[:, 1:] = 0.0, top[:, :-1]
    total = top[:, -1:]
    lo, hi = total * percentile_min, total * percentile_max
    lo, hi = _widen(lo, hi, total, min_width)
    overlap = np.clip(np.minimum(hi, top) - np.maximum(lo, bottom), 0.0, None)
    weight = overlap.sum(axis=1)
    mean = (values * overlap).sum(axis=1) / np.where(weight != 0, weight, 1.0)
    return np.where(weight != 0, mean, 0.0).astype(np.float32).reshape(np.shape(img))


def _widen(lo: np.ndarray, hi: np.ndarray, total: np.ndarray, min_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Re-centre windows narrower than ``min_width`` and shift them back inside ``[0, total]``."""
    narrow = hi - lo < min_width
    centre = (lo + hi) / 2
    lo = np.where(narrow, centre - min_width / 2, lo)
    hi = np.where(narrow, centre + min_width / 2, hi)
    over = narrow & (hi > total)
    lo, hi = np.where(over, total - min_width, lo), np.where(over, total, hi)
    under = narrow & (lo < 0)
    return np.where(under, 0.0, lo), np.where(under, min_width, hi)


def smootherstep(x: np.ndarray) -> np.ndarray:
    """``x³ (6x² - 15x + 10)`` (A1111's form ``x*x*x*(x*(6x - 15) + 10)``)."""
    return x * x * x * (x * (6 * x - 15) + 10)


def difference_opacity(distance: np.ndarray, nmask: np.ndarray, settings: SoftInpainting) -> np.ndarray:
    """Composite opacity of the generated image, uint8 ``(h, w)`` at latent size (spec §1.6 steps 3-5, C8).

    ``distance``: per-latent-pixel ``|samples - init|`` (float32); ``nmask``: the latent generate mask
    (h, w). ``half = threshold * q/(1.00001 - q)`` with ``q = 0.5 (1 - influence) + influence (1 - n^(scale/2))``;
    ``M = uint8(255 (1 - smootherstep(1/(1 + (D'/half)^contrast))))`` (truncation, float32). D' = 0 with
    half = 0 is 0/0: A1111's uint8 cast of NaN, 0 on x86, is written as 0 here.
    """
    s = settings
    n = np.clip(np.asarray(nmask, dtype=np.float32), 0, 1)
    q = np.float32(1) - n ** np.float32(s.mask_blend_scale / 2)
    q = np.float32(0.5 * (1 - s.composite_mask_influence)) + q * np.float32(s.composite_mask_influence)
    q = q / (np.float32(1.00001) - q)
    kernel = gaussian_kernel(1.5, 2)
    d = weighted_histogram_filter(distance, kernel, 0.9, 1.0, 1.0)
    d = weighted_histogram_filter(d, kernel, 0.25, 0.75, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = d / (np.float32(s.composite_difference_threshold) * q)
        y = np.float32(1) / (np.float32(1) + x ** np.float32(s.composite_difference_contrast))
        m = np.float32(255) * (np.float32(1) - smootherstep(y))
    return np.nan_to_num(m, nan=0.0).astype(np.uint8)


def soft_composite_mask(
    distance: np.ndarray, nmask: np.ndarray, settings: SoftInpainting, width: int, height: int,
    paste_box: tuple[int, int, int, int] | None, overlay_size: tuple[int, int],
) -> Image.Image:
    """The overlay mask ``M`` (mode ``L``) of one image: 255 = generated, 0 = original (spec §1.6 step 6).

    The latent-size opacity is resized with resize mode 2 to ``width x height`` (LANCZOS), blurred with
    ``GaussianBlur(radius=4)`` and, with ``paste_box``, uncropped onto an ``overlay_size`` canvas (0 outside
    the box).
    """
    small = Image.fromarray(difference_opacity(distance, nmask, settings), mode="L")
    mask = resize_image(small, ResizeMode.RESIZE_AND_FILL, width, height).convert("L")
    mask = mask.filter(ImageFilter.GaussianBlur(radius=4))
    if paste_box is not None:
        mask = uncrop(mask, overlay_size, paste_box).convert("L")
    return mask
