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
from retouch.imaging.mask import mask_transparency
from retouch.imaging.seams import clamp_to_support, grid_aligned_box, paste_back
from retouch.params import Img2Img, MaskedContent, ParamError, ResizeMode

__all__ = ["Prepared", "prepare_images", "check_image_inputs", "finish_image", "flatten", "BLANK_MASK_COMMENT"]

GRID_FALLBACK_COMMENT = ("grid_aligned_crop: no box of r x the processing size fits in the image around the mask; "
                         "A1111's crop box was used.")
BLANK_MASK_COMMENT = "Unable to perform Only masked inpainting: the mask is blank, so the job ran as plain img2img."


@dataclass(frozen=True)
class Prepared:
    """Processing-size inputs for the VAE and the finishing step.

    ``images``: one RGB image per init image at ``width x height`` (latent upscale: original size).
    ``mask``: the processing-size mask ("L", W×H) or None; ``latent_mask``: the mask that drives latent
    blending and the pixel fill (``job.latent_mask`` if given, else ``mask``). ``overlay_mask``: the
    mask of the overlay (full size for Only masked, doubled for Whole picture). ``paste_box``:
    ``(x, y, w, h)`` of the Only-masked crop in the original image. ``originals``: the flattened init
    images before crop and fill (resized for Whole picture), the hole-free overlay base that soft
    inpainting composites over (spec soft-masks.md §1.6 step 1).
    """

    images: tuple[Image.Image, ...]
    mask: Image.Image | None
    latent_mask: Image.Image | None
    overlay_mask: Image.Image | None
    overlays: tuple[Image.Image | None, ...]
    paste_box: tuple[int, int, int, int] | None
    color_references: tuple[np.ndarray | None, ...]
    comments: tuple[str, ...]
    originals: tuple[Image.Image, ...] = ()


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
    m = to_single_channel_mask(job.mask, job.mask_round, job.mask_alpha)
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
    if job.grid_aligned_crop:  # Retouch: no fill band, no sub-pixel shift (soft-masks.md §5.4 item 3)
        box = grid_aligned_box(box, width, height, m.width, m.height) or box
    proc = resize_image(m.crop(box), ResizeMode.RESIZE_AND_FILL, width, height).convert("L")
    return proc, m, box


def check_image_inputs(job: Img2Img) -> None:
    """Refuse image/mask combinations A1111 mishandles (spec §8.5, §8.7) before any model runs."""
    if job.mask is None:
        return
    if job.mask_alpha == "alpha" and mask_transparency(job.mask) is None:
        raise ParamError(
            f"mask_alpha 'alpha' needs a mask with transparency (an alpha band: RGBA, LA, PA; or P, L, RGB with a "
            f"transparency entry); this mask is mode {job.mask.mode!r} without one. Use mask_alpha 'a1111', "
            "'auto' or 'luminance'"
        )
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
    if job.grid_aligned_crop and box is not None and job.mask is not None \
            and grid_aligned_box(box, width, height, *job.mask.size) != box:
        comments += (GRID_FALLBACK_COMMENT,)
    latent_mask = job.latent_mask.convert("L") if job.latent_mask is not None and mask is not None else mask
    images, overlays, refs, originals = [], [], [], []
    for source in job.init_images:
        image = flatten(source, job.img2img_background_color)
        if box is None and job.resize_mode != ResizeMode.LATENT_UPSCALE:
            image = resize_image(image, job.resize_mode, width, height)
        originals.append(image)
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
                    tuple(refs), comments, tuple(originals))


def finish_image(
    job: Img2Img, prepared: Prepared, index: int, image: Image.Image, soft_mask: Image.Image | None = None,
    pinned: np.ndarray | None = None,
) -> tuple[Image.Image, Image.Image | None, Image.Image | None]:
    """Colour correction -> uncrop -> overlay for output ``index`` (spec §2.12-§2.13).

    Returns (final image, mask output or None, mask composite or None); ``index`` selects the init
    image's overlay and colour reference (batch slots share them when there is one init image).
    ``soft_mask`` (soft inpainting's composite mask of this image) replaces the overlay mask and the
    overlay, which is then applied even with ``overlay_inpaint`` off, as in A1111 (soft-masks.md §1.7).
    Retouch options (soft-masks.md §5.4): ``keep_unmasked_exact`` clamps the overlay mask to the blurred
    mask's support and always pastes; ``paste_back="exact"`` and ``seam_correction`` change the paste
    (``pinned``: processing-size pixels of latent cells kept at the init latent, where the seam residual
    is measured).
    """
    slot = index if len(prepared.overlays) > 1 else 0
    reference = prepared.color_references[slot]
    if reference is not None:
        image = apply_color_correction(reference, image)
    overlay = prepared.overlays[slot] if job.overlay_inpaint else None
    overlay_mask, use_overlay = prepared.overlay_mask, job.overlay_inpaint
    if soft_mask is not None:
        overlay_mask, use_overlay = soft_mask, True
        overlay = make_overlay(prepared.originals[slot], soft_mask)
    if job.keep_unmasked_exact and overlay_mask is not None and prepared.overlay_mask is not None:
        overlay_mask, use_overlay = clamp_to_support(overlay_mask, prepared.overlay_mask), True
        overlay = make_overlay(prepared.originals[slot], overlay_mask)
    mask_out = composite = None
    if overlay_mask is not None:
        if job.return_mask:
            mask_out = overlay_mask.convert("RGB")
        if job.return_mask_composite:  # no overlay: A1111 never uncrops, the composite stays crop-sized
            composite = mask_composite(image, overlay_mask, prepared.paste_box if use_overlay else None)
    if use_overlay and overlay_mask is not None and (job.paste_back == "exact" or job.seam_correction != "none"):
        radius = job.seam_radius if job.seam_correction == "lowfreq" else None
        image = paste_back(prepared.originals[slot], image, overlay_mask, prepared.paste_box,
                           exact=job.paste_back == "exact", seam_radius=radius, pinned=pinned)
    elif use_overlay and (overlay is not None or prepared.paste_box is not None):
        image = apply_overlay(image, overlay, prepared.paste_box)
    return image.convert("RGB"), mask_out, composite
