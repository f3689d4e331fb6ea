"""Pixel-space preparation and finishing (``retouch.preprocess``) against A1111's ``init()`` and
``process_images_inner``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retouch import Img2Img, MaskedContent, ResizeMode
from retouch.imaging import fill_masked, mask_composite, resize_image
from retouch.preprocess import finish_image, prepare_images


def _scene(size: int = 32) -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _mask(size: int = 32, lo: int = 8, hi: int = 24) -> Image.Image:
    m = np.zeros((size, size), dtype=np.uint8)
    m[lo:hi, lo:hi] = 255
    return Image.fromarray(m, "L")


@pytest.mark.parametrize("fill", [MaskedContent.FILL, MaskedContent.LATENT_NOISE, MaskedContent.LATENT_NOTHING])
def test_every_masked_content_mode_but_original_fills_the_pixels(fill: MaskedContent) -> None:
    """A1111 ``init()`` runs ``if self.inpainting_fill != 1: image = masking.fill(image, latent_mask)``
    before the colour reference and the VAE: modes 0, 2 and 3 all get the pixel fill, only mode 1
    ("original") keeps the pixels. So the prepared image must equal ``fill_masked`` of the resized image
    with the processing mask, and the colour reference must be taken from that filled image."""
    job = Img2Img(init_images=[_scene()], mask=_mask(), width=32, height=32, inpainting_fill=fill,
                  inpaint_full_res=False, mask_blur=0, img2img_color_correction=True)
    prepared = prepare_images(job, 32, 32)
    assert prepared.latent_mask is not None
    expected = fill_masked(resize_image(_scene(), ResizeMode.JUST_RESIZE, 32, 32), prepared.latent_mask)
    assert prepared.images[0].tobytes() == expected.tobytes()
    ref = prepared.color_references[0]
    assert ref is not None
    from retouch.imaging import color_reference

    assert np.array_equal(ref, color_reference(expected))


def test_original_mode_keeps_the_pixels() -> None:
    """Mode 1 ("original") is the one mode A1111 does not fill."""
    job = Img2Img(init_images=[_scene()], mask=_mask(), width=32, height=32,
                  inpainting_fill=MaskedContent.ORIGINAL, inpaint_full_res=False, mask_blur=0)
    assert prepare_images(job, 32, 32).images[0].tobytes() == _scene().tobytes()


def test_only_masked_composite_without_overlay_is_crop_sized() -> None:
    """A1111 v1.10.1's ``apply_overlay(image, paste_to, None)`` returns the image untouched when there is
    no overlay (``overlay_inpaint`` off), so ``original_denoised_image`` is the W x H crop and the mask
    composite is ``Image.composite(crop as RGBa, transparent, resize_image(2, mask_for_overlay, W, H))``:
    crop-sized, with the full-size overlay mask squeezed into W x H by resize mode 2."""
    job = Img2Img(init_images=[_scene(48)], mask=_mask(48, 16, 32), width=32, height=32,
                  inpaint_full_res=True, inpaint_full_res_padding=4, mask_blur=0, overlay_inpaint=False,
                  return_mask_composite=True)
    prepared = prepare_images(job, 32, 32)
    assert prepared.paste_box is not None and prepared.overlay_mask is not None
    generated = Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8))
    final, _, composite = finish_image(job, prepared, 0, generated)
    assert final.size == (32, 32)
    assert composite is not None and composite.size == (32, 32)
    cut = resize_image(prepared.overlay_mask, ResizeMode.RESIZE_AND_FILL, 32, 32).convert("L")
    expected = Image.composite(generated.convert("RGBA").convert("RGBa"), Image.new("RGBa", (32, 32)), cut)
    assert composite.tobytes() == expected.convert("RGBA").tobytes()
    assert mask_composite(generated, prepared.overlay_mask, None).tobytes() == composite.tobytes()


def test_only_masked_composite_with_overlay_is_uncropped() -> None:
    """With ``overlay_inpaint`` on, A1111 uncrops before compositing: the composite has the original size."""
    job = Img2Img(init_images=[_scene(48)], mask=_mask(48, 16, 32), width=32, height=32,
                  inpaint_full_res=True, inpaint_full_res_padding=4, mask_blur=0, return_mask_composite=True)
    prepared = prepare_images(job, 32, 32)
    generated = Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8))
    final, _, composite = finish_image(job, prepared, 0, generated)
    assert final.size == (48, 48) and composite is not None and composite.size == (48, 48)


def test_a_preset_colour_reference_replaces_the_processed_image() -> None:
    """A1111's init() adds colour corrections only when ``p.color_corrections is None``; a script that
    presets them (Loopback: the original init image, unresized) has every output matched to that."""
    from retouch.imaging import color_reference

    reference = Image.new("RGB", (10, 6), (200, 30, 30))
    job = Img2Img(init_images=[_scene()], width=32, height=32, img2img_color_correction=True,
                  color_correction_image=reference)
    ref = prepare_images(job, 32, 32).color_references[0]
    assert ref is not None and np.array_equal(ref, color_reference(reference))
