"""detect_family: a pure function of key names and shapes; detect_family_diffusers: from folder configs."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retouch.models.detect import describe_layout, detect_family, detect_family_diffusers
from retouch.models.families import FAMILIES
from retouch.models.ldm_layout import to_ldm_state_dict
from retouch.models.tokenizers import CONFIG_ROOT

from .helpers import ALL_FAMILIES, meta_bundle

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


def shapes_of(bundle) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in to_ldm_state_dict(bundle).items()}


@pytest.fixture(scope="module")
def tiny_shapes(originals):
    return {name: shapes_of(bundle) for name, bundle in originals.items()}


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_tiny_and_full_size_files_are_detected(name, tiny_shapes):
    assert detect_family(tiny_shapes[name]) is FAMILIES[name]
    assert detect_family(shapes_of(meta_bundle(name))) is FAMILIES[name]


def test_sd2_without_marker_is_epsilon_and_the_marker_makes_it_v(tiny_shapes):
    shapes = dict(tiny_shapes["sd2-v"])
    assert detect_family(shapes).name == "sd2-v"
    del shapes["v_pred"]
    assert detect_family(shapes).name == "sd2"


@pytest.mark.parametrize(("channels", "expected"), [(4, "sd1"), (9, "sd1-inpaint"), (8, "pix2pix")])
def test_conv_in_channels_choose_the_conditioning(tiny_shapes, channels, expected):
    shapes = dict(tiny_shapes["sd1"])
    shapes[CONV_IN] = (32, channels, 3, 3)
    assert detect_family(shapes).name == expected


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(ALL_FAMILIES),
    extra=st.dictionaries(
        st.sampled_from(["model_ema.", "alphas_cumprod", "lora_te_", "first_stage_model.loss.", "betas"]).flatmap(
            lambda p: st.text("abcdef0123456789.", min_size=1, max_size=12).map(lambda s: p + s)
        ),
        st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
        max_size=6,
    ),
)
def test_unrelated_keys_never_change_the_answer(tiny_shapes, name, extra):
    assert detect_family({**tiny_shapes[name], **extra}) is FAMILIES[name]


def test_no_unet_names_what_was_found():
    shapes = {"conv_in.weight": (320, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": (320, 320, 3, 3)}
    with pytest.raises(ValueError, match=r"no LDM UNet .*found 2 tensors; key prefixes: conv_in\.weight \(1\), down_blocks\.0 \(1\)"):
        detect_family(shapes)


def test_unknown_text_encoder_names_prefixes_and_channels(tiny_shapes):
    shapes = {k.replace("cond_stage_model.transformer.", "cond_stage_model.roberta."): v for k, v in tiny_shapes["sd1"].items()}
    with pytest.raises(ValueError, match=r"no supported text encoder.*cond_stage_model\.roberta \(\d+\).*UNet input channels: 4"):
        detect_family(shapes)


def test_sdxl_refiner_is_named(tiny_shapes):
    shapes = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in tiny_shapes["sdxl"].items()
              if not k.startswith("conditioner.embedders.0.")}
    with pytest.raises(ValueError, match="SDXL refiner checkpoints are not supported"):
        detect_family(shapes)


def test_mixed_text_encoder_and_unet_widths_are_rejected():
    shapes = shapes_of(meta_bundle("sd1"))
    shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = (49408, 1024)
    with pytest.raises(ValueError, match="cross-attention width 768 does not match the sd1 text encoder width 1024"):
        detect_family(shapes)


@pytest.mark.parametrize(
    ("source", "channels", "marker", "message"),
    [
        ("sd2", 5, False, r"sd2 with 5 UNet input channels and epsilon prediction \(supported: sd1 \(4 ch\)"),
        ("sdxl", 8, False, "sdxl with 8 UNet input channels"),
        ("sd1", 4, True, "v-prediction sd1 checkpoint"),
        ("sd2", 9, True, "v-prediction sd2 with 9 input channels"),
    ],
)
def test_unsupported_variants_say_what_they_are(tiny_shapes, source, channels, marker, message):
    shapes = dict(tiny_shapes[source])
    shapes[CONV_IN] = (32, channels, 3, 3)
    if marker:
        shapes["v_pred"] = (0,)
    with pytest.raises(ValueError, match=message):
        detect_family(shapes)


def test_describe_layout_summarises(tiny_shapes):
    text = describe_layout(tiny_shapes["sdxl"])
    assert text.startswith(f"{len(tiny_shapes['sdxl'])} tensors; key prefixes: model.diffusion_model (")
    assert text.endswith("UNet input channels: 4; cross-attention width: 64")


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_bundled_config_folders_are_detected_as_their_family(name):
    assert detect_family_diffusers(CONFIG_ROOT / FAMILIES[name].config_dir) is FAMILIES[name]


def test_diffusers_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="model_index.json is missing"):
        detect_family_diffusers(tmp_path)
    folder = tmp_path / "odd"
    shutil.copytree(CONFIG_ROOT / "sd1", folder)
    config = json.loads((folder / "text_encoder" / "config.json").read_text())
    (folder / "text_encoder" / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="hidden_act 'relu'"):
        detect_family_diffusers(folder)
    (folder / "text_encoder" / "config.json").write_text(json.dumps(config))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": "v_prediction"}))
    with pytest.raises(ValueError, match=r"sd1 with 4 UNet input channels and v_prediction.*StableDiffusionPipeline"):
        detect_family_diffusers(folder)
