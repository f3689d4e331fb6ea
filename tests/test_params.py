"""Img2Img: A1111 field names and defaults, enum coercion, mask_blur property semantics, clear errors."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from retouch.params import UI_DEFAULTS, Img2Img, InpaintArea, MaskedContent, ParamError, ResizeMode


def test_defaults_are_a1111_class_defaults() -> None:
    job = Img2Img()
    assert (job.resize_mode, job.denoising_strength, job.image_cfg_scale) == (ResizeMode.JUST_RESIZE, 0.75, None)
    assert (job.mask_blur_x, job.mask_blur_y, job.mask_blur, job.mask_round) == (4, 4, 4, True)
    assert job.inpainting_fill == MaskedContent.FILL and job.inpaint_full_res is True
    assert (job.inpaint_full_res_padding, job.inpainting_mask_invert, job.initial_noise_multiplier) == (0, 0, 1.0)
    assert (job.steps, job.cfg_scale, job.width, job.height, job.seed, job.subseed) == (50, 7.0, 512, 512, -1, -1)
    assert (job.seed_resize_from_w, job.seed_resize_from_h, job.batch_size, job.n_iter) == (-1, -1, 1, 1)
    assert job.overlay_inpaint and not job.img2img_fix_steps and job.img2img_background_color == "#ffffff"
    assert UI_DEFAULTS["inpainting_fill"] == MaskedContent.ORIGINAL and UI_DEFAULTS["inpaint_full_res"] is False


def test_mask_blur_property_semantics() -> None:
    assert Img2Img(mask_blur=8).mask_blur_x == 8 and Img2Img(mask_blur=8).mask_blur_y == 8
    # an int mask_blur wins over x/y, as A1111's dataclass init order makes it
    j = Img2Img(mask_blur_x=2, mask_blur_y=3, mask_blur=5)
    assert (j.mask_blur_x, j.mask_blur_y, j.mask_blur) == (5, 5, 5)
    k = Img2Img(mask_blur_x=2, mask_blur_y=3)
    assert k.mask_blur is None
    assert k.replace(mask_blur_y=2).mask_blur == 2
    assert k.replace(prompt="x").mask_blur_x == 2


def test_enums_and_integers_are_both_accepted() -> None:
    assert Img2Img(resize_mode=2).resize_mode is ResizeMode.RESIZE_AND_FILL
    assert Img2Img(inpainting_fill=MaskedContent.LATENT_NOISE).inpainting_fill == 2
    assert Img2Img(inpaint_full_res=InpaintArea.WHOLE_PICTURE).inpaint_full_res is False
    assert Img2Img(inpaint_full_res=False).inpaint_area is InpaintArea.WHOLE_PICTURE


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"denoising_strength": math.nan}, "denoising_strength must be a finite"),
        ({"denoising_strength": 1.5}, "denoising_strength must be in [0.0, 1.0]"),
        ({"resize_mode": 7}, "resize_mode must be one of 0 (JUST_RESIZE)"),
        ({"inpainting_fill": "fill"}, "inpainting_fill must be one of"),
        ({"steps": 0}, "steps must be in [1, 10000]"),
        ({"width": 4}, "width must be in [8, 16384]"),
        ({"cfg_scale": math.inf}, "cfg_scale must be a finite"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"init_images": ["x"]}, "init_images[0] must be a PIL image"),
        ({"mask": "x"}, "mask must be a PIL image"),
        ({"inpainting_mask_invert": 2}, "inpainting_mask_invert must be 0 or 1"),
        ({"seed": -2}, "seed must be in [-1, 4294967295]"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ParamError) as e:
        Img2Img(**kw)  # type: ignore[arg-type]
    assert needle in str(e.value)


def test_jobs_are_frozen_and_copy_their_image_list() -> None:
    images = [Image.new("RGB", (8, 8))]
    job = Img2Img(init_images=images)
    images.append(Image.new("RGB", (8, 8)))
    assert len(job.init_images) == 1
    with pytest.raises(AttributeError):
        job.steps = 3  # type: ignore[misc]


def test_background_colour_and_seed_resize_are_checked() -> None:
    with pytest.raises(ParamError, match="img2img_background_color"):
        Img2Img(img2img_background_color="not-a-colour")
    with pytest.raises(ParamError, match="seed_resize_from_w must be in"):
        Img2Img(seed_resize_from_w=10**6)
    assert Img2Img(img2img_background_color="black").img2img_background_color == "black"
