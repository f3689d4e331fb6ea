"""Overlay and paste-back of the untouched original after decoding (spec §2.12).

A1111 builds the overlay as premultiplied RGBa (the original with alpha ``255 - overlay_mask``), converts
it to RGBA and alpha-composites it over the generated image; the un-premultiply in that round trip can
lose up to a level or so in partially transparent pixels. :func:`exact_paste` is Retouch's one-pass
float alternative with the same formula ``out = a*orig + (1-a)*gen``, ``a = (255 - m)/255``.

Box convention: ``paste_box`` is A1111's ``paste_to`` ``(x, y, w, h)``; crop boxes elsewhere are
``(x1, y1, x2, y2)``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from retouch.imaging.mask import as_l
from retouch.imaging.resize import resize_image
from retouch.params import ResizeMode

__all__ = ["make_overlay", "uncrop", "apply_overlay", "mask_composite", "exact_paste"]


def make_overlay(image: Image.Image, overlay_mask: Image.Image) -> Image.Image:
    """RGBA copy of ``image`` with alpha ``255 - overlay_mask`` (spec §2.12, built as A1111 builds it).

    The image is pasted as premultiplied RGBa through the inverted mask onto a transparent RGBa canvas,
    then converted to RGBA. ``image`` and ``overlay_mask`` must have the same size (resize the mask
    first with :func:`~retouch.imaging.resize.resize_image` if they differ).
    """
    if image.size != overlay_mask.size:
        raise ValueError(f"image size {image.size} and overlay mask size {overlay_mask.size} must match")
    overlay = Image.new("RGBa", image.size)
    overlay.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(as_l(overlay_mask)))
    return overlay.convert("RGBA")


def _check_box(paste_box: tuple[int, int, int, int]) -> None:
    if len(paste_box) != 4 or paste_box[2] < 1 or paste_box[3] < 1:
        raise ValueError(f"paste_box must be (x, y, w, h) with w, h >= 1; got {paste_box!r}")


def uncrop(image: Image.Image, size: tuple[int, int], paste_box: tuple[int, int, int, int]) -> Image.Image:
    """Put a generated crop back: resize to the box with mode 1, paste at ``(x, y)`` on a transparent
    RGBA canvas of ``size`` (spec §2.6 step 6). Returns RGBA, transparent outside the box."""
    _check_box(paste_box)
    x, y, w, h = paste_box
    canvas = Image.new("RGBA", size)
    canvas.paste(resize_image(image, ResizeMode.CROP_AND_RESIZE, w, h), (x, y))
    return canvas


def apply_overlay(
    image: Image.Image, overlay: Image.Image | None, paste_box: tuple[int, int, int, int] | None
) -> Image.Image:
    """Uncrop (when ``paste_box``) and composite the overlay over the generated image (spec §2.12); RGB.

    With ``paste_box`` the image is first :func:`uncrop`-ed onto a canvas of the overlay's size. The
    overlay is then alpha-composited "over" at the top-left, as PIL does (an overlay larger than the
    image, e.g. for a processing size not a multiple of 8, is cut to the image). ``overlay`` None returns
    the image converted to RGB, as A1111 does with ``overlay_inpaint`` off (no uncrop either: there is
    no canvas size to uncrop onto, so a ``paste_box`` without an overlay is a ValueError).
    """
    if overlay is None:
        if paste_box is not None:
            raise ValueError("paste_box needs an overlay: the uncrop canvas takes the overlay's size")
        return image.convert("RGB")
    if overlay.mode != "RGBA":
        raise ValueError(f"overlay must be RGBA (from make_overlay); got mode {overlay.mode!r}")
    base = uncrop(image, overlay.size, paste_box) if paste_box is not None else image.convert("RGBA")
    base.alpha_composite(overlay)
    return base.convert("RGB")


def mask_composite(
    image: Image.Image, overlay_mask: Image.Image, paste_box: tuple[int, int, int, int] | None
) -> Image.Image:
    """The ``return_mask_composite`` output: the generated image cut out with the overlay mask (spec §2.12).

    The image is uncropped onto a canvas of the mask's size when ``paste_box`` is given; the overlay
    mask is brought to the image's size with resize mode 2 (a no-op when sizes match); the result is
    RGBA, premultiplied-composited over transparency, so it is transparent where the mask is 0.
    """
    base = uncrop(image, overlay_mask.size, paste_box) if paste_box is not None else image
    cut = resize_image(as_l(overlay_mask), ResizeMode.RESIZE_AND_FILL, base.width, base.height).convert("L")
    source = base.convert("RGBA").convert("RGBa")
    return Image.composite(source, Image.new("RGBa", base.size), cut).convert("RGBA")


def exact_paste(original: Image.Image, generated: Image.Image, overlay_mask: Image.Image) -> Image.Image:
    """Retouch's exact paste-back: ``round(a*orig + (1-a)*gen)``, ``a = (255 - m)/255``, one float pass.

    Same formula as A1111's overlay (spec §2.12) without the premultiplied round trip: where ``m == 0``
    the output equals ``original`` exactly and where ``m == 255`` it equals ``generated`` exactly.
    ``original`` and ``overlay_mask`` must have the same size, at least that of ``generated``; like the
    overlay they are aligned at the top-left and cut to the generated size. Returns RGB of ``generated``'s
    size (uncrop an Only-masked crop with :func:`uncrop` first).
    """
    if original.size != overlay_mask.size:
        raise ValueError(
            f"original size {original.size} and overlay mask size {overlay_mask.size} must match"
        )
    w, h = generated.size
    if original.width < w or original.height < h:
        raise ValueError(f"generated size {generated.size} must not exceed the original's {original.size}")
    box = (0, 0, w, h)
    orig = np.asarray(original.convert("RGB").crop(box), dtype=np.float64)
    gen = np.asarray(generated.convert("RGB"), dtype=np.float64)
    alpha = (255.0 - np.asarray(as_l(overlay_mask).crop(box), dtype=np.float64))[:, :, None] / 255.0
    out = np.rint(alpha * orig + (1.0 - alpha) * gen)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="RGB")
