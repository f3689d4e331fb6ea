"""Retouch's seam options (spec soft-masks.md §5.4; T10-T13).

T10 emulates the latent process exactly where it matters for the seam: a latent cell that is generated
decodes to flat colour A, a pinned cell to the original's flat colour B (a decoder without bleed, like
the demo VAE's nearest-upsample start). The bound is the steepest slope of a Gaussian-blurred step,
1/(σ√2π), times the step height (doubled for Whole picture's clip(2m)), with the spec's 25 % margin.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from retouch.imaging import (
    blur_mask,
    crop_region,
    expand_crop_region,
    latent_mask_values,
    resize_image,
    uncrop,
    whole_picture_overlay_mask,
)
from retouch.imaging.composite import apply_overlay, make_overlay
from retouch.imaging.seams import (
    clamp_to_support,
    cover_latent_mask,
    grid_aligned_box,
    lowfreq_seam_correction,
    paste_back,
)
from retouch.params import ResizeMode

W, H, SIGMA, A, B = 128, 32, 8, 200, 60


def _edge_mask() -> Image.Image:
    m = np.zeros((H, W), np.uint8)
    m[:, 61:] = 255  # an edge inside a latent cell (pixels 56-63), as a user's mask usually is
    return blur_mask(Image.fromarray(m), SIGMA, SIGMA)


def _decoded(cells: np.ndarray) -> Image.Image:
    """Generated cells -> flat A, pinned cells -> flat B, nearest-upsampled x8 (no decoder bleed)."""
    up = np.kron(cells, np.ones((8, 8))) > 0.5
    return Image.fromarray(np.where(up, A, B).astype(np.uint8)).convert("RGB")


def _max_step(image: Image.Image) -> int:
    row = np.asarray(image.convert("L"), dtype=np.int16)[H // 2]
    return int(np.abs(np.diff(row)).max())


def seam_slopes() -> dict[str, int]:
    """Max per-pixel luma step across the band for A1111 vs cover latent masks, both paste modes."""
    m = _edge_mask()
    original = Image.new("RGB", (W, H), (B, B, B))
    a1111 = latent_mask_values(m, W // 8, H // 8, round=True)
    cover = cover_latent_mask(m, W // 8, H // 8)
    out = {}
    for area, alpha in (("whole", whole_picture_overlay_mask(m)), ("only_masked", m)):
        out[f"{area}/a1111"] = _max_step(apply_overlay(_decoded(a1111), make_overlay(original, alpha), None))
        out[f"{area}/cover+exact"] = _max_step(paste_back(original, _decoded(cover), alpha, None, exact=True,
                                                          seam_radius=None))
    return out


def test_seam_slope_t10() -> None:
    """T10: cover + exact paste stays under 1.25·2Δ/(σ√2π) (Whole picture) and 1.25·Δ/(σ√2π) (Only
    masked); A1111's latent mask puts the A->B step at the m ≈ 0.5 cell edge, far above the bound."""
    slopes = seam_slopes()
    delta = A - B
    whole_bound = 1.25 * 2 * delta / (SIGMA * math.sqrt(2 * math.pi))
    only_bound = 1.25 * delta / (SIGMA * math.sqrt(2 * math.pi))
    assert slopes["whole/cover+exact"] <= whole_bound
    assert slopes["only_masked/cover+exact"] <= only_bound
    assert slopes["whole/a1111"] > 2 * whole_bound and slopes["only_masked/a1111"] > 2 * only_bound


def _blobs(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96]
    m = np.zeros((96, 96), bool)
    for _ in range(4):
        cx, cy, r = rng.uniform(10, 86), rng.uniform(10, 86), rng.uniform(4, 14)
        m |= np.hypot(x - cx, y - cy) < r
    return blur_mask(Image.fromarray((m * 255).astype(np.uint8)), 4, 4)


def cover_fractions(seeds: range) -> dict[str, float]:
    """Fraction of pixels with overlay α > 0 (clip(2m) > 0) lying in generated latent cells."""
    shown = generated_a1111 = generated_cover = 0
    for seed in seeds:
        m = _blobs(seed)
        alpha = np.asarray(whole_picture_overlay_mask(m)) > 0
        a1111 = np.kron(latent_mask_values(m, 12, 12, round=True), np.ones((8, 8))) > 0.5
        cover = np.kron(cover_latent_mask(m, 12, 12), np.ones((8, 8))) > 0.5
        shown += int(alpha.sum())
        generated_a1111 += int((alpha & a1111).sum())
        generated_cover += int((alpha & cover).sum())
    return {"a1111": generated_a1111 / shown, "cover": generated_cover / shown}


def test_cover_masks_contain_every_shown_pixel_t12() -> None:
    """T12: 100 % with cover (by construction); A1111's rounded bicubic mask leaves part of the visible
    transition in pinned cells (G2a)."""
    fractions = cover_fractions(range(8))
    assert fractions["cover"] == 1.0
    assert fractions["a1111"] < 0.95


def test_cover_plus_one_grows_by_one_cell() -> None:
    m = np.zeros((32, 32), np.uint8)
    m[12, 12] = 1  # one pixel in cell (1, 1)
    one = cover_latent_mask(Image.fromarray(m), 4, 4)
    assert one.sum() == 1 and one[1, 1] == 1  # C20: one masked pixel -> its whole cell
    grown = cover_latent_mask(Image.fromarray(m), 4, 4, grow=1)
    assert grown[:3, :3].all() and grown.sum() == 9


def _pattern(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(3)
    small = rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


def _shift(original: Image.Image, pasted: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, int]:
    """The (dx, dy) in -3..3 that best aligns the pasted box with the original (interior only)."""
    o, p = np.asarray(original, dtype=np.float64), np.asarray(pasted.convert("RGB"), dtype=np.float64)
    x1, y1, x2, y2 = box[0] + 4, box[1] + 4, box[2] - 4, box[3] - 4
    errors = {(dx, dy): np.abs(p[y1:y2, x1:x2] - o[y1 + dy : y2 + dy, x1 + dx : x2 + dx]).mean()
              for dx in range(-3, 4) for dy in range(-3, 4)}
    return min(errors, key=errors.__getitem__)


def _round_trip(original: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
    crop = resize_image(original.crop(box), ResizeMode.RESIZE_AND_FILL, size, size)
    return uncrop(crop, original.size, (box[0], box[1], box[2] - box[0], box[3] - box[1]))


def crop_shifts() -> dict[str, tuple[int, int]]:
    """Only-masked crop -> 64x64 -> paste back, A1111's box vs the grid-aligned box."""
    original = _pattern(240, 200)
    mask = np.zeros((200, 240), np.uint8)
    mask[61:163, 37:121] = 255  # 84x102 bbox -> A1111 box 102x102 (scale 1.59), aligned box 128x128 (2)
    a1111 = expand_crop_region(crop_region(Image.fromarray(mask), 0), 64, 64, 240, 200)
    aligned = grid_aligned_box(a1111, 64, 64, 240, 200)
    assert aligned is not None and aligned[2] - aligned[0] == 128
    return {"a1111": _shift(original, _round_trip(original, a1111, 64), a1111),
            "aligned": _shift(original, _round_trip(original, aligned, 64), aligned)}


def test_grid_aligned_crop_has_no_shift_t13() -> None:
    """T13: the aligned box (integer scale 2) pastes back with 0 px shift, and a box of at most W x H is
    exactly the W x H crop itself (scale 1: the paste is the original)."""
    assert crop_shifts()["aligned"] == (0, 0)
    original = _pattern(96, 96)
    box = grid_aligned_box((10, 10, 70, 70), 64, 64, 96, 96)
    assert box == (8, 8, 72, 72)
    pasted = _round_trip(original, box, 64).convert("RGB")
    assert np.array_equal(np.asarray(pasted)[8:72, 8:72], np.asarray(original)[8:72, 8:72])


def _checker(w: int, h: int, ox: int, oy: int, side: int = 16) -> Image.Image:
    """Grey checkerboard (28 / 228) of ``side``-px squares with a corner at (ox, oy)."""
    y, x = np.mgrid[0:h, 0:w]
    v = (((x - ox) // side + (y - oy) // side) % 2) * 200 + 28
    return Image.fromarray(np.stack([v] * 3, -1).astype(np.uint8))


def _edge_shifts(original: Image.Image, out: Image.Image, rect: tuple[int, int, int, int], ox: int, oy: int,
                 side: int = 16) -> tuple[float, float, float]:
    """(mean dx, mean dy, max |dy|) in px of the checkerboard's edges inside ``rect``, out minus original.

    Each edge position is measured on a 16-px segment across it by the area rule: with the segment
    normalised to 0 at its start and 1 at its end, the step sits ``Σ(1 - v)`` px after the start (exact
    for a sharp step, and unbiased for any blur that is symmetric about the edge). Segments run along
    the middle half of each square, away from the corners.
    """
    o = np.asarray(original, dtype=np.float64)[..., 0]
    p = np.asarray(out.convert("RGB"), dtype=np.float64)[..., 0]
    x1, y1, x2, y2 = rect
    half = side // 2

    def pos(seg: np.ndarray) -> float:
        return float(np.sum(1 - (seg - seg[0]) / (seg[-1] - seg[0])))

    mid = range(side // 4, 3 * side // 4)
    dx = [pos(p[r, e - half:e + half]) - pos(o[r, e - half:e + half])
          for e in range(ox % side, o.shape[1], side) if x1 <= e - half and e + half <= x2
          for r in range(y1, y2) if (r - oy) % side in mid]
    dy = [pos(p[e - half:e + half, c]) - pos(o[e - half:e + half, c])
          for e in range(oy % side, o.shape[0], side) if y1 <= e - half and e + half <= y2
          for c in range(x1, x2) if (c - ox) % side in mid]
    return float(np.mean(dx)), float(np.mean(dy)), float(np.max(np.abs(dy)))


def test_grid_aligned_crop_removes_the_a1111_fill_band_shift_t13() -> None:
    """T13 through the job path (prepare_images -> identity "model" -> finish_image), 320x240 checkerboard,
    Only masked at 64x48, rectangular mask cols 40-276 x rows 30-188, blur 0, masked content "original".

    A1111 box (expand_crop_region's int truncation): 237x177, aspect 1.339 > 64/48. Resize-and-fill makes
    the content 64 x (177·64 // 237 = 47) rows, pasted at row 24 - 47 // 2 = 1 below a 1-row fill band;
    paste-back (crop-and-resize) scales the 64x48 result by 177/48 = 3.6875 in y with no band. So a source
    row y (edge coordinate, from the box top) comes back at 3.6875 + y·47·3.6875/177 = 3.6875 + 0.979·y:
    the content moves down by 3.69 px at the top of the box, falling to 0 at its bottom (the PR A1111#16243
    symptom: "shifted ... on factor number of pixels after it was upscaled by this factor"). Measured over
    the edges inside the mask: mean 1.90 px down, max 3.19 px; x is exact (64/237 then 237/64).
    grid_aligned_crop picks 256x192 at (30, 13), scale 4: LANCZOS exactly 4x down and 4x up (centre-aligned,
    no band), every latent cell an exact 32x32 block; the checkerboard's corners sit on that grid, so the measure is
    exact there too: 0 px in x and y (≤ 1e-9). Derivation by hand from the resize rules of spec §2.3/§2.6."""
    from retouch.params import Img2Img, MaskedContent
    from retouch.preprocess import finish_image, prepare_images

    original = _checker(320, 240, 30, 13)
    mask = np.zeros((240, 320), np.uint8)
    mask[30:189, 40:277] = 255
    rect = (40, 30, 277, 189)
    got = {}
    for aligned in (False, True):
        job = Img2Img(init_images=[original], mask=Image.fromarray(mask), width=64, height=48, mask_blur=0,
                      inpainting_fill=MaskedContent.ORIGINAL, grid_aligned_crop=aligned)
        prepared = prepare_images(job, 64, 48)
        out, _, _ = finish_image(job, prepared, 0, prepared.images[0])
        got[aligned] = (prepared.paste_box, _edge_shifts(original, out, rect, 30, 13))
    box, (dx, dy, dy_max) = got[False]
    assert box == (40, 21, 237, 177)
    assert abs(dx) < 0.05 and dy == pytest.approx(1.90, abs=0.02) and dy_max == pytest.approx(3.19, abs=0.02)
    assert dy >= 1.0
    box, (dx, dy, dy_max) = got[True]
    assert box == (30, 13, 256, 192)
    assert abs(dx) <= 1e-9 and abs(dy) <= 1e-9 and dy_max <= 1e-9


def test_grid_aligned_box_rules() -> None:
    assert grid_aligned_box((0, 0, 20, 20), 64, 64, 100, 100) == (0, 0, 32, 32)  # r = 1/2, shifted inside
    assert grid_aligned_box((30, 30, 60, 60), 64, 64, 96, 96) == (29, 29, 61, 61)  # r = 1/2, centred
    assert grid_aligned_box((90, 90, 100, 100), 64, 64, 100, 100) == (84, 84, 100, 100)  # r = 1/4, inside
    assert grid_aligned_box((0, 0, 100, 60), 64, 64, 100, 100) is None  # 128 does not fit: A1111's box


def test_clamp_to_support_t9_unit() -> None:
    w = Image.fromarray(np.full((4, 4), 200, np.uint8))
    s = np.zeros((4, 4), np.uint8)
    s[:, 2:] = 1
    out = np.asarray(clamp_to_support(w, Image.fromarray(s)))
    assert (out[:, :2] == 0).all() and (out[:, 2:] == 200).all()


def test_lowfreq_correction_removes_a_drift_and_leaves_the_interior() -> None:
    """G1 on synthetic data: a generated region with a constant colour drift plus noise; the ring just
    inside α > 0 loses ≥ 80 % of the drift, pixels deeper than ``radius`` are untouched, α = 0 untouched."""
    rng = np.random.default_rng(0)
    original = 120 + rng.normal(0, 3, (96, 96, 3))
    y, x = np.mgrid[0:96, 0:96]
    alpha = np.clip((36 - np.hypot(x - 48, y - 48)) / 4, 0, 1)
    drift = np.array([12.0, -6.0, 4.0])
    generated = original + drift + rng.normal(0, 2, original.shape)
    fixed = lowfreq_seam_correction(original, generated, alpha, 16)
    r = np.hypot(x - 48, y - 48)
    edge = (alpha > 0) & (r > 33)
    assert np.abs((fixed - original)[edge].mean(0)).max() <= 0.2 * np.abs(drift).max()
    assert np.array_equal(fixed[r < 18], generated[r < 18])
    assert np.array_equal(fixed[alpha == 0], generated[alpha == 0])


@pytest.mark.parametrize("exact", [True, False])
def test_paste_back_uncrops_and_keeps_outside_bytes(exact: bool) -> None:
    """Outside the overlay mask the original's bytes, inside the generated crop's (both paste modes);
    the seam correction changes only generated pixels within ``radius`` of the edge."""
    original = _pattern(80, 60)
    gen = Image.new("RGB", (32, 32), (9, 9, 9))
    mask = np.zeros((60, 80), np.uint8)
    mask[20:40, 30:50] = 255
    plain = np.asarray(paste_back(original, gen, Image.fromarray(mask), (24, 14, 32, 32), exact=exact,
                                  seam_radius=None))
    assert np.array_equal(plain[mask == 0], np.asarray(original)[mask == 0])
    assert (plain[mask == 255] == 9).all()
    fixed = np.asarray(paste_back(original, gen, Image.fromarray(mask), (24, 14, 32, 32), exact=exact,
                                  seam_radius=4))
    assert np.array_equal(fixed[mask == 0], plain[mask == 0])
    assert (fixed[25:35, 35:45] == 9).all() and not (fixed[mask == 255] == 9).all()


def test_grid_aligned_crop_in_prepare_images() -> None:
    """prepare_images uses the aligned box (Only masked), and says so when none fits (A1111's box kept)."""
    from retouch.params import Img2Img
    from retouch.preprocess import GRID_FALLBACK_COMMENT, prepare_images

    image = _pattern(240, 200)
    mask = np.zeros((200, 240), np.uint8)
    mask[61:163, 37:121] = 255
    job = Img2Img(init_images=[image], mask=Image.fromarray(mask), width=64, height=64, mask_blur=0,
                  grid_aligned_crop=True)
    prepared = prepare_images(job, 64, 64)
    assert prepared.paste_box is not None and prepared.paste_box[2:] == (128, 128)
    assert GRID_FALLBACK_COMMENT not in prepared.comments
    tall = job.replace(width=64, height=192, mask_blur=0)  # 1x needs 64x192 ok, 2x needs 128x384: too tall
    mask2 = np.zeros((200, 240), np.uint8)
    mask2[0:200, 100:110] = 255
    prepared = prepare_images(tall.replace(mask=Image.fromarray(mask2), mask_blur=0), 64, 192)
    assert GRID_FALLBACK_COMMENT in prepared.comments
