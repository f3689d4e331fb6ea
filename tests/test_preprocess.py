"""Pixel-space preparation and finishing (``retouch.preprocess``) against A1111's ``init()`` and
``process_images_inner``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retouch import Img2Img, MaskedContent, ResizeMode
from retouch.imaging import fill_masked, resize_image
from retouch.preprocess import prepare_images


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

