"""A1111 request -> Img2Img translation: API defaults, options, infotext, limits, refusals (no model)."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from retouch.params import MaskedContent, ParamError, ResizeMode
from retouch.server.a1111.options import OPTION_FIELDS, SUPPORTED, OptionsStore, default_options
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.a1111.translate import build_submission
from retouch.server.config import ServerConfig

from .conftest import b64, gradient

NAMES = ("tiny.safetensors [0123456789]", "tiny")


def build(options: dict[str, Any] | None = None, config: ServerConfig | None = None, **fields: Any):
    fields.setdefault("init_images", [b64(gradient())])
    req = Img2ImgRequest(**fields)
    return build_submission(req, options or default_options(NAMES[0]), config or ServerConfig(), NAMES)


def test_request_schema_has_a1111_api_defaults() -> None:
    """Spec §5.2 / §2.1 API column (which differs from the UI, §8.9)."""
    req = Img2ImgRequest()
    expected = {
        "prompt": "", "negative_prompt": "", "seed": -1, "subseed": -1, "subseed_strength": 0.0,
        "seed_resize_from_h": -1, "seed_resize_from_w": -1, "sampler_name": None, "sampler_index": "Euler",
        "scheduler": None, "batch_size": 1, "n_iter": 1, "steps": 50, "cfg_scale": 7.0, "width": 512,
        "height": 512, "denoising_strength": 0.75, "resize_mode": 0, "image_cfg_scale": None, "mask": None,
        "mask_blur_x": 4, "mask_blur_y": 4, "mask_blur": None, "mask_round": True, "inpainting_fill": 0,
        "inpaint_full_res": True, "inpaint_full_res_padding": 0, "inpainting_mask_invert": 0,
        "initial_noise_multiplier": None, "include_init_images": False, "send_images": True,
        "save_images": False, "alwayson_scripts": {}, "script_args": [], "script_name": None,
        "override_settings": None, "override_settings_restore_afterwards": True, "eta": None,
    }
    assert {k: getattr(req, k) for k in expected} == expected


def test_defaults_reach_the_job() -> None:
    job = build().job
    assert (job.sampler_name, job.scheduler, job.steps, job.cfg_scale) == ("Euler", "Automatic", 50, 7.0)
    assert (job.width, job.height, job.denoising_strength, job.seed) == (512, 512, 0.75, -1)
    assert job.inpaint_full_res is True and job.inpaint_full_res_padding == 0
    assert job.inpainting_fill == MaskedContent.FILL and job.resize_mode == ResizeMode.JUST_RESIZE
    assert (job.mask_blur_x, job.mask_blur_y, job.initial_noise_multiplier, job.clip_skip) == (4, 4, 1.0, 1)
    assert len(job.init_images) == 1 and job.init_images[0].size == (64, 64)


def test_sampler_name_wins_over_index_and_suffix_is_split() -> None:
    assert build(sampler_index="Euler a").job.sampler_name == "Euler a"
    assert build(sampler_index="Euler a", sampler_name="DDIM").job.sampler_name == "DDIM"
    sub = build(sampler_name="DPM++ 2M Karras")  # legacy name with schedule, accepted
    assert sub.job.sampler_name == "DPM++ 2M Karras"


@pytest.mark.parametrize(
    ("option", "value", "field", "expected"),
    [
        ("img2img_fix_steps", True, "img2img_fix_steps", True),
        ("img2img_color_correction", True, "img2img_color_correction", True),
        ("overlay_inpaint", False, "overlay_inpaint", False),
        ("inpainting_mask_weight", 0.5, "inpainting_mask_weight", 0.5),
        ("initial_noise_multiplier", 0.9, "initial_noise_multiplier", 0.9),
        ("img2img_extra_noise", 0.2, "img2img_extra_noise", 0.2),
        ("img2img_background_color", "#000000", "img2img_background_color", "#000000"),
        ("return_mask", True, "return_mask", True),
        ("return_mask_composite", True, "return_mask_composite", True),
        ("eta_noise_seed_delta", 31337, "eta_noise_seed_delta", 31337),
        ("CLIP_stop_at_last_layers", 2, "clip_skip", 2),
        ("s_churn", 0.5, "s_churn", 0.5),
        ("s_noise", 0.9, "s_noise", 0.9),
    ],
)
def test_override_settings_map_to_job_fields(option: str, value: Any, field: str, expected: Any) -> None:
    assert OPTION_FIELDS[option] == field
    options = default_options(NAMES[0])
    before = dict(options)
    job = build(options, override_settings={option: value}).job
    assert getattr(job, field) == expected
    assert options == before  # per job: the server defaults are untouched


def test_request_field_beats_override_which_beats_server_option() -> None:
    options = {**default_options(NAMES[0]), "s_churn": 0.1, "CLIP_stop_at_last_layers": 3}
    assert build(options).job.s_churn == 0.1
    assert build(options, override_settings={"s_churn": 0.2}).job.s_churn == 0.2
    assert build(options, override_settings={"s_churn": 0.2}, s_churn=0.3).job.s_churn == 0.3
    assert build(options).job.clip_skip == 3


def test_eta_options_apply_by_sampler_kind() -> None:
    options = {**default_options(NAMES[0]), "eta_ancestral": 0.5, "eta_ddim": 0.3}
    assert build(options, sampler_name="Euler a").job.eta == 0.5
    assert build(options, sampler_name="DDIM").job.eta == 0.3
    assert build(options, sampler_name="Euler").job.eta is None  # Euler takes no eta
    assert build(options, sampler_name="Euler a", eta=0.7).job.eta == 0.7  # the request wins
    assert build(sampler_name="Euler a").job.eta is None  # default 1.0: left to the engine
    assert build(sampler_name="Euler a", override_settings={"eta_ancestral": 0.25}).job.eta == 0.25
    with pytest.raises(ParamError, match="eta must be in"):
        build(override_settings={"eta_ddim": -1.0})


def test_unknown_option_is_refused_with_supported_list() -> None:
    with pytest.raises(ParamError) as e:
        build(override_settings={"sd_model_checkpoint": NAMES[1], "bogus_option": 1, "another": 2})
    msg = str(e.value)
    assert "another, bogus_option" in msg and "override_settings" in msg
    assert all(name in msg for name in SUPPORTED)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"inpainting_mask_weight": 5}, "inpainting_mask_weight must be in [0.0, 1.0]"),
        ({"CLIP_stop_at_last_layers": "many"}, "CLIP_stop_at_last_layers: Input should be a valid integer"),
        ({"sd_model_checkpoint": "other.ckpt"}, "'other.ckpt' is not loaded"),
        ({"samples_format": "gif"}, "samples_format must be one of png"),
        ({"img2img_background_color": "not-a-colour"}, "img2img_background_color must be a colour"),
    ],
)
def test_bad_override_values_name_the_option(override: dict[str, Any], needle: str) -> None:
    with pytest.raises(ParamError, match="override_settings") as e:
        build(override_settings=override)
    assert needle in str(e.value)


def test_model_checkpoint_override_for_the_loaded_model_is_accepted() -> None:
    assert build(override_settings={"sd_model_checkpoint": "tiny"}).job.steps == 50


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"script_name": "img2img alternative test"}, "script_name 'img2img alternative test' is not supported"),
        ({"alwayson_scripts": {"soft inpainting": {"args": [True]}, "ADetailer": {}}}, "Script 'ADetailer' not found"),
        ({"styles": ["cinematic"]}, "styles 'cinematic' not found; known styles: none"),
        ({"restore_faces": True}, "restore_faces=true is not supported"),
        ({"tiling": True}, "tiling=true is not supported"),
        ({"save_images": True}, "save_images=true is not supported"),
        ({"refiner_checkpoint": "refiner.safetensors"}, "refiner_checkpoint is not supported"),
    ],
)
def test_unsupported_features_are_refused_by_name(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ParamError) as e:
        build(**fields)
    assert needle in str(e.value)


def test_infotext_fills_only_fields_the_request_did_not_set() -> None:
    text = (
        "ignored prompt\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 9, Seed: 1234, "
        "Size: 512x512, Variation seed: 99, Variation seed strength: 0.25, Seed resize from: 320x256, "
        "Clip skip: 2, ENSD: 31337, Denoising strength: 0.3"
    )
    job = build(infotext=text, steps=7, prompt="kept").job
    assert job.steps == 7 and job.prompt == "kept"  # set by the request
    assert (job.sampler_name, job.scheduler, job.seed) == ("DPM++ 2M", "Karras", 1234)
    assert (job.subseed, job.subseed_strength) == (99, 0.25)
    assert (job.seed_resize_from_w, job.seed_resize_from_h) == (320, 256)  # not swapped (A1111 §8.17 is)
    assert (job.clip_skip, job.eta_noise_seed_delta) == (2, 31337)
    assert job.cfg_scale == 7.0 and job.denoising_strength == 0.75  # never taken from infotext (§5.5)


def test_infotext_with_bad_number_is_refused() -> None:
    with pytest.raises(ParamError, match="infotext: Steps value 'many'"):
        build(infotext="p\nSteps: many, Sampler: Euler, Seed: 1")


@pytest.mark.parametrize(
    ("fields", "config", "needle"),
    [
        ({"steps": 151}, {}, "steps value 151 is over this server's limit of 150"),
        ({"steps": 11}, {"max_steps": 10}, "limit of 10"),
        ({"batch_size": 9}, {}, "batch_size value 9 is over this server's limit of 8"),
        ({"n_iter": 17}, {}, "n_iter value 17 is over this server's limit of 16"),
        ({"width": 4096, "height": 4096}, {}, "width x height = 4096x4096 is over"),
        ({"seed_resize_from_w": 100000, "seed_resize_from_h": 100000}, {},
         "seed_resize_from_w x seed_resize_from_h = 100000x100000 is over"),
        ({"init_images": []}, {}, "init_images is required"),
        ({"init_images": None}, {}, "init_images is required"),
        ({"init_images": [b64(gradient())] * 3, "batch_size": 2}, {}, "3 init images were given but batch_size is 2"),
        ({"init_images": [b64(gradient())] * 3}, {"max_batch_size": 2}, "init_images count 3 is over"),
    ],
)
def test_limits_and_missing_images(fields: dict[str, Any], config: dict[str, Any], needle: str) -> None:
    with pytest.raises(ParamError) as e:
        build(config=ServerConfig(**config), **fields)
    assert needle in str(e.value)


def test_base64_with_and_without_data_prefix_decode_identically() -> None:
    image = gradient(40, 24)
    plain = build(init_images=[b64(image)]).job.init_images[0]
    prefixed = build(init_images=[b64(image, prefix=True)]).job.init_images[0]
    assert plain.tobytes() == prefixed.tobytes() == image.tobytes()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("not base64 at all!", "init_images[0]: image is not valid base64"),
        ("aGVsbG8gd29ybGQ=", "init_images[0]: image is not an image"),  # "hello world"
        (b64(gradient(8, 8), fmt="PPM"), "init_images[0]: image is in unsupported format PPM"),
        ("https://example.com/cat.png", "init_images[0]: image URLs are not fetched"),
    ],
)
def test_broken_images_are_refused_by_name(data: str, needle: str) -> None:
    with pytest.raises(ParamError) as e:
        build(init_images=[data])
    assert needle in str(e.value)


def test_image_and_mask_over_pixel_limit() -> None:
    config = ServerConfig(max_image_pixels=32 * 32)
    with pytest.raises(ParamError, match=r"init_images\[0\]: image is 64x64 = 4096 pixels; the limit is 1024"):
        build(config=config)
    with pytest.raises(ParamError, match="mask: image is 64x64 = 4096 pixels"):
        build(config=config, init_images=[b64(gradient(32, 32))], mask=b64(Image.new("L", (64, 64), 255)))


def test_options_store_applies_changes_and_validates() -> None:
    store = OptionsStore(NAMES[0], NAMES)
    snapshot = store.snapshot()
    new = store.update({"img2img_fix_steps": True, "sd_model_checkpoint": "tiny"})
    assert new["img2img_fix_steps"] is True and new["sd_model_checkpoint"] == NAMES[0]
    assert snapshot["img2img_fix_steps"] is False  # earlier snapshots are unaffected
    with pytest.raises(ParamError, match="unsupported option"):
        store.update({"img2img_fix_steps": False, "nope": 1})
    assert store.snapshot()["img2img_fix_steps"] is True  # all or nothing


def test_emphasis_from_override_settings_and_from_infotext() -> None:
    """A1111's ``emphasis`` option reaches the job; an infotext's ``Emphasis`` key is restored (§2.2)."""
    assert build(override_settings={"emphasis": "No norm"}).job.emphasis == "No norm"
    text = "a (cat:1.2)\nSteps: 3, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Emphasis: Ignore"
    assert build(infotext=text).job.emphasis == "Ignore"
    assert build().job.emphasis == "Original"
    with pytest.raises(ParamError, match="emphasis must be one of"):
        build(override_settings={"emphasis": "Loud"})
