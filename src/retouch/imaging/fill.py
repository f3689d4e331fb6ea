"""Masked content "fill": smooth extrapolation of the surroundings into the masked area (spec §2.8, mode 0)."""

from __future__ import annotations

from PIL import Image, ImageFilter, ImageOps

from retouch.imaging.mask import as_l

__all__ = ["fill_masked"]

# (PIL Gaussian blur radius, how many times the blurred copy is composited), in order (spec §2.8).
FILL_PASSES: tuple[tuple[int, int], ...] = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Pre-fill the masked area of ``image`` with blurred surrounding colours (A1111 ``fill``, spec §2.8).

    The image becomes premultiplied RGBa with alpha ``255 - m`` (transparent where masked); blurred copies
    at the radii and repeat counts of ``FILL_PASSES`` are alpha-composited, un-premultiplied, onto a
    transparent canvas. The last pass (radius 0) puts the original pixels back with alpha ``255 - m``, so
    pixels with ``m == 0`` are unchanged. ``image`` and ``mask`` must have the same size; returns RGB.
    """
    if image.size != mask.size:
        raise ValueError(f"image size {image.size} and mask size {mask.size} must match for the fill")
    keep = ImageOps.invert(as_l(mask))
    premultiplied = Image.new("RGBa", image.size)
    premultiplied.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    canvas = Image.new("RGBA", image.size)
    for radius, repeats in FILL_PASSES:
        blurred = premultiplied.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            canvas.alpha_composite(blurred)
    return canvas.convert("RGB")
