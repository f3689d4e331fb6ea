"""Retouch's seam and paste-back options beyond A1111 (spec soft-masks.md §5.4; all off by default).

* :func:`cover_latent_mask` (``latent_mask_mode`` "cover"/"cover+1", G2a): a latent cell is generated
  iff any pixel of its 8x8 block has mask > 0, so every pixel the overlay shows as generated lies in a
  generated cell (A1111's bicubic mask stops generating at m ≈ 0.5, where the overlay is already opaque).
* :func:`grid_aligned_box` (``grid_aligned_crop``, G2b): an "Only masked" box that is exactly r·W x r·H
  source pixels (r integer or 1/2, 1/4, 1/8), so crop -> W x H -> crop needs no fill band and no
  sub-pixel shift (A1111 PR #16243).
* :func:`clamp_to_support` (``keep_unmasked_exact``, G3): the generated weight is 0 wherever the blurred
  user mask is 0, also for soft inpainting's composite (which reaches ~20 px beyond it).
* :func:`lowfreq_seam_correction` (``seam_correction="lowfreq"``, G1): the original-minus-generated
  residual on a ring just outside the generated region is spread inward by normalised Gaussian
  convolution and faded out over ``radius`` px, removing the colour offset that shows as a ring.
* :func:`paste_back`: uncrop, optional seam correction, then A1111's premultiplied overlay or
  :func:`~retouch.imaging.composite.exact_paste`.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from retouch.imaging.composite import apply_overlay, exact_paste, make_overlay, uncrop
from retouch.imaging.mask import as_l

__all__ = ["cover_latent_mask", "grid_aligned_box", "clamp_to_support", "lowfreq_seam_correction", "paste_back"]


def cover_latent_mask(mask: Image.Image, latent_width: int, latent_height: int, grow: int = 0) -> np.ndarray:
    """Latent generate mask, float32 (h, w) of 0/1: 1 iff a pixel of the cell's 8x8 block is > 0, then
    dilated by ``grow`` cells (3x3 per cell). ``mask``: the processing-size mask (mode L, >= 8·size)."""
    m = np.asarray(as_l(mask))[: latent_height * 8, : latent_width * 8] > 0
    cells = m.reshape(latent_height, 8, latent_width, 8).any(axis=(1, 3)).astype(np.uint8)
    if grow > 0:
        cells = cv2.dilate(cells, np.ones((3, 3), np.uint8), iterations=grow)
    return np.asarray(cells, dtype=np.float32)


def grid_aligned_box(
    box: tuple[int, int, int, int], width: int, height: int, image_width: int, image_height: int
) -> tuple[int, int, int, int] | None:
    """The smallest ``(x1, y1, x2, y2)`` of size (r·width) x (r·height), r in {1/8, 1/4, 1/2, 1, 2, 3, ...},
    that contains ``box``, centred on it and shifted inside the image; None when none fits."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    ratios = [(1, 8), (1, 4), (1, 2)] + [(k, 1) for k in range(1, 1 + max(image_width // width, 1))]
    for num, den in ratios:
        w, h = width * num, height * num
        if w % den or h % den or w // den < bw or h // den < bh:
            continue
        w, h = w // den, h // den
        if w > image_width or h > image_height:
            return None
        x1 = min(max((box[0] + box[2] - w) // 2, 0), image_width - w)
        y1 = min(max((box[1] + box[3] - h) // 2, 0), image_height - h)
        return x1, y1, x1 + w, y1 + h
    return None


def clamp_to_support(weight: Image.Image, support: Image.Image) -> Image.Image:
    """``weight`` (L, 255 = generated) set to 0 where ``support`` (the blurred user mask) is 0."""
    w = np.asarray(as_l(weight)).copy()
    w[np.asarray(as_l(support)) == 0] = 0
    return Image.fromarray(w, mode="L")


def lowfreq_seam_correction(
    original: np.ndarray, generated: np.ndarray, alpha: np.ndarray, radius: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """``G + β·Ẽ`` (spec §5.4 item 4), float64 HxWx3.

    Ring R = pixels with α = 0 within ``radius`` px (Euclidean) of {α > 0} (and ``valid``, where G
    exists); ``E = O - G`` on R; ``Ẽ = (E·1_R ⊛ g) / (1_R ⊛ g)`` with a Gaussian of σ = radius/2;
    ``β = clamp(1 - d_in/radius, 0, 1)``, d_in = distance of a generated pixel to {α = 0}. ``original``,
    ``generated``: uint8/float HxWx3; ``alpha``: HxW in [0, 1].
    """
    inside = (alpha > 0).astype(np.uint8)
    d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    d_in = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    ring = (inside == 0) & (d_out <= radius)
    if valid is not None:
        ring &= valid
    o, g = original.astype(np.float64), generated.astype(np.float64)
    r = ring.astype(np.float64)
    sigma = radius / 2
    size = 2 * int(3 * sigma + 0.5) + 1
    num = cv2.GaussianBlur((o - g) * r[..., None], (size, size), sigma, borderType=cv2.BORDER_CONSTANT)
    den = cv2.GaussianBlur(r, (size, size), sigma, borderType=cv2.BORDER_CONSTANT)
    spread = np.where(den[..., None] > 1e-8, num / np.maximum(den[..., None], 1e-8), 0.0)
    beta = np.clip(1 - d_in / radius, 0, 1) * inside
    return g + beta[..., None] * spread


def paste_back(
    original: Image.Image, generated: Image.Image, overlay_mask: Image.Image,
    paste_box: tuple[int, int, int, int] | None, *, exact: bool, seam_radius: int | None,
    pinned: np.ndarray | None = None,
) -> Image.Image:
    """Uncrop ``generated`` onto ``original``'s canvas, seam-correct it when ``seam_radius``, and composite
    ``original·(1 - α) + G·α`` with α = overlay_mask/255: exactly (one float pass) or as A1111 does.

    ``pinned`` (bool, generated's size): pixels of latent cells the sampler kept at the init latent; only
    there does G show the untouched round trip, so only there is the seam residual measured (a ring
    pixel inside a generated cell would carry new content into the correction).
    """
    valid = None if pinned is None else np.asarray(pinned, dtype=bool)
    if paste_box is not None:
        canvas = uncrop(generated, original.size, paste_box)
        inside = np.asarray(canvas.getchannel("A")) > 0
        if valid is not None:
            cells = Image.fromarray(valid.astype(np.uint8) * 255).resize(generated.size, Image.Resampling.NEAREST)
            inside &= np.asarray(uncrop(cells, original.size, paste_box).convert("L")) > 127
        valid = inside
        generated = canvas.convert("RGB")
    if seam_radius is not None:
        alpha = np.asarray(as_l(overlay_mask), dtype=np.float64) / 255.0
        fixed = lowfreq_seam_correction(np.asarray(original.convert("RGB")), np.asarray(generated.convert("RGB")),
                                        alpha, seam_radius, valid)
        generated = Image.fromarray(np.clip(np.rint(fixed), 0, 255).astype(np.uint8), mode="RGB")
    if exact:
        return exact_paste(original, generated, overlay_mask)
    return apply_overlay(generated, make_overlay(original, overlay_mask), None)
