"""Pixel-space preparation and finishing of one job: masks, crops, fills, overlays (no torch).

``prepare_images`` is A1111's ``init()`` up to the VAE (spec Appendix A steps 2-3, §2.2-§2.8, §2.13):
mask to one channel -> invert -> x/y blur -> "Only masked" crop box or "Whole picture" resize ->
overlay -> crop/resize of the image -> masked-content fill -> colour reference.
``finish_image`` is the per-image tail after decoding (§2.12): colour correction -> uncrop -> overlay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageColor

from retouch.imaging import (
    apply_color_correction,
    apply_overlay,
    blur_mask,
    color_reference,
    crop_region,
    expand_crop_region,
    fill_masked,
    invert_mask,
    make_overlay,
    mask_composite,
    resize_image,
    to_single_channel_mask,
    whole_picture_overlay_mask,
)
from retouch.params import Img2Img, MaskedContent, ParamError, ResizeMode

__all__ = ["Prepared", "prepare_images", "check_image_inputs", "finish_image", "flatten", "BLANK_MASK_COMMENT"]

BLANK_MASK_COMMENT = "Unable to perform Only masked inpainting: the mask is blank, so the job ran as plain img2img."


@dataclass(frozen=True)
class Prepared:
    """Processing-size inputs for the VAE and the finishing step.

    ``images``: one RGB image per init image at ``width x height`` (latent upscale: original size).
    ``mask``: the processing-size mask ("L", W×H) or None; ``latent_mask``: the mask that drives latent
    blending and the pixel fill (``job.latent_mask`` if given, else ``mask``). ``overlay_mask``: the
    mask of the overlay (full size for Only masked, doubled for Whole picture). ``paste_box``:
    ``(x, y, w, h)`` of the Only-masked crop in the original image.
    """

    images: tuple[Image.Image, ...]
    mask: Image.Image | None
    latent_mask: Image.Image | None
    overlay_mask: Image.Image | None
    overlays: tuple[Image.Image | None, ...]
    paste_box: tuple[int, int, int, int] | None
    color_references: tuple[np.ndarray | None, ...]
    comments: tuple[str, ...]


def flatten(image: Image.Image, background: str) -> Image.Image:
    """Alpha-composite RGBA onto ``background``, then convert to RGB (A1111 ``images.flatten``, §2.2)."""
    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, ImageColor.getrgb(background))
        canvas.alpha_composite(image)
        image = canvas
    return image.convert("RGB")


def _processing_mask(job: Img2Img, width: int, height: int) -> tuple[Image.Image | None, Image.Image | None,
                                                                   tuple[int, int, int, int] | None]:
    """(processing mask, overlay mask, crop box) from ``job.mask`` (spec §2.4-§2.7)."""
    if job.mask is None:
        return None, None, None
    m = to_single_channel_mask(job.mask, job.mask_round)
    if job.inpainting_mask_invert:
        m = invert_mask(m)
    if job.mask_blur_x > 0 or job.mask_blur_y > 0:
        m = blur_mask(m, job.mask_blur_x, job.mask_blur_y)
    if not job.inpaint_full_res:
        proc = resize_image(m, job.resize_mode, width, height).convert("L")
        return proc, whole_picture_overlay_mask(proc), None
    box = crop_region(m, job.inpaint_full_res_padding)
    if box is None:
        return None, None, None
    box = expand_crop_region(box, width, height, m.width, m.height)
    proc = resize_image(m.crop(box), ResizeMode.RESIZE_AND_FILL, width, height).convert("L")
    return proc, m, box


def check_image_inputs(job: Img2Img) -> None:
    """Refuse image/mask combinations A1111 mishandles (spec §8.5, §8.7) before any model runs."""
    if job.mask is None:
        return
    if job.inpaint_full_res:
        for i, im in enumerate(job.init_images):
            if im.size != job.mask.size:
                raise ParamError(
                    f"mask size {job.mask.width}x{job.mask.height} differs from init_images[{i}] size "
                    f"{im.width}x{im.height}; with Only masked inpainting they must be equal "
                    "(resize the mask, or use inpaint_full_res=False)"
                )
    elif job.resize_mode == ResizeMode.LATENT_UPSCALE:
        raise ParamError(
            "resize_mode 3 (latent upscale) cannot be combined with a mask in Whole picture inpainting "
            "(A1111 composites at the wrong scale or fails); use resize_mode 0-2 or inpaint_full_res=True"
        )
    if job.latent_mask is not None and job.latent_mask.size != (job.width, job.height):
        raise ParamError(
            f"latent_mask must be {job.width}x{job.height} (the processing size); "
            f"got {job.latent_mask.width}x{job.latent_mask.height}"
        )


def prepare_images(job: Img2Img, width: int, height: int) -> Prepared:
    """A1111 ``init()`` in pixel space for every init image (spec Appendix A steps 2-3).

    The masked-content pixel fill (``masking.fill``) runs for every mode except 1 "original": A1111's
    ``init()`` tests ``inpainting_fill != 1``, so "latent noise" and "latent nothing" are filled too,
    before the colour reference and the VAE encode (their latent fill comes on top, in the engine).
    Correction to spec §2.8, which describes the pixel fill under mode 0 only.
    """
    if not job.init_images:
        raise ParamError("init_images must hold at least one image")
    check_image_inputs(job)
    mask, overlay_mask, box = _processing_mask(job, width, height)
    comments: tuple[str, ...] = ()
    if job.mask is not None and mask is None:
        comments = (BLANK_MASK_COMMENT,)
    latent_mask = job.latent_mask.convert("L") if job.latent_mask is not None and mask is not None else mask
    images, overlays, refs = [], [], []
    for source in job.init_images:
        image = flatten(source, job.img2img_background_color)
        if box is None and job.resize_mode != ResizeMode.LATENT_UPSCALE:
            image = resize_image(image, job.resize_mode, width, height)
        overlays.append(make_overlay(image, overlay_mask) if overlay_mask is not None else None)
        if box is not None:
            image = resize_image(image.crop(box), ResizeMode.RESIZE_AND_FILL, width, height)
        if latent_mask is not None and job.inpainting_fill != MaskedContent.ORIGINAL:
            image = fill_masked(image, latent_mask)  # modes 0, 2 and 3 alike (A1111 init; see the docstring)
        reference = image if job.color_correction_image is None else job.color_correction_image
        refs.append(color_reference(reference) if job.img2img_color_correction else None)
        images.append(image)
    paste_box = None if box is None else (box[0], box[1], box[2] - box[0], box[3] - box[1])
    return Prepared(tuple(images), mask, latent_mask, overlay_mask, tuple(overlays), paste_box,
                    tuple(refs), comments)


def finish_image(
    job: Img2Img, prepared: Prepared, index: int, image: Image.Image
) -> tuple[Image.Image, Image.Image | None, Image.Image | None]:
    """Colour correction -> uncrop -> overlay for output ``index`` (spec §2.12-§2.13).

    Returns (final image, mask output or None, mask composite or None); ``index`` selects the init
    image's overlay and colour reference (batch slots share them when there is one init image).
    """
    slot = index if len(prepared.overlays) > 1 else 0
    reference = prepared.color_references[slot]
    if reference is not None:
        image = apply_color_correction(reference, image)
    overlay = prepared.overlays[slot] if job.overlay_inpaint else None
    mask_out = composite = None
    if prepared.overlay_mask is not None:
        if job.return_mask:
            mask_out = prepared.overlay_mask.convert("RGB")
        if job.return_mask_composite:  # no overlay: A1111 never uncrops, the composite stays crop-sized
            box = prepared.paste_box if job.overlay_inpaint else None
            composite = mask_composite(image, prepared.overlay_mask, box)
    if job.overlay_inpaint and (overlay is not None or prepared.paste_box is not None):
        image = apply_overlay(image, overlay, prepared.paste_box)
    return image.convert("RGB"), mask_out, composite
