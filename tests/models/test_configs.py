"""The bundled config folders hold the public SD architectures, consistent with families.py."""

from __future__ import annotations

import json

import pytest

from retouch.models.families import FAMILIES
from retouch.models.loading import bundled_configs
from retouch.models.tokenizers import CONFIG_ROOT

from .helpers import ALL_FAMILIES

PIPELINES = {
    "sd1": "StableDiffusionPipeline", "sd1-inpaint": "StableDiffusionInpaintPipeline",
    "pix2pix": "StableDiffusionInstructPix2PixPipeline", "sd2": "StableDiffusionPipeline",
    "sd2-v": "StableDiffusionPipeline", "sd2-inpaint": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLPipeline", "sdxl-inpaint": "StableDiffusionXLInpaintPipeline",
}
CONTEXT = {"sd1": 768, "sd2": 1024, "sdxl": 2048}
# (hidden, layers, activation, pad token) of each text encoder per base
TEXT = {
    "sd1": [(768, 12, "quick_gelu", "<|endoftext|>")],
    "sd2": [(1024, 23, "gelu", "!")],
    "sdxl": [(768, 12, "quick_gelu", "<|endoftext|>"), (1280, 32, "gelu", "!")],
}


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_config_folder_matches_the_family(name):
    family = FAMILIES[name]
    folder = CONFIG_ROOT / family.config_dir
    assert read(folder / "model_index.json")["_class_name"] == PIPELINES[name]
    configs = bundled_configs(family)
    unet, vae = configs["unet"], configs["vae"]
    assert unet["in_channels"] == family.unet_in_channels
    assert unet["cross_attention_dim"] == CONTEXT[family.base]
    assert unet["block_out_channels"] == ([320, 640, 1280] if family.is_sdxl else [320, 640, 1280, 1280])
    assert vae["scaling_factor"] == family.latent_scale
    assert vae["block_out_channels"] == [128, 256, 512, 512]
    assert unet["sample_size"] * 8 == family.native_size
    scheduler = read(folder / "scheduler" / "scheduler_config.json")
    assert scheduler["prediction_type"] == family.prediction
    assert (scheduler["beta_start"], scheduler["beta_end"], scheduler["num_train_timesteps"]) == (0.00085, 0.012, 1000)
    assert scheduler["beta_schedule"] == "scaled_linear"
    encoders = [k for k in ("text_encoder", "text_encoder_2") if k in configs]
    assert len(encoders) == len(TEXT[family.base])
    for key, (hidden, layers, act, pad) in zip(encoders, TEXT[family.base], strict=True):
        cfg = configs[key]
        assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["hidden_act"]) == (hidden, layers, act)
        tokenizer = read(folder / key.replace("text_encoder", "tokenizer") / "tokenizer_config.json")
        assert tokenizer["pad_token"] == pad
        assert (CONFIG_ROOT / family.config_dir / key.replace("text_encoder", "tokenizer") / tokenizer["vocab_and_merges"]).resolve() == (CONFIG_ROOT / "clip").resolve()


def test_sdxl_add_embedding_input_is_pooled_text_plus_six_time_ids():
    unet = bundled_configs(FAMILIES["sdxl"])["unet"]
    pooled = bundled_configs(FAMILIES["sdxl"])["text_encoder_2"]["projection_dim"]
    assert unet["projection_class_embeddings_input_dim"] == pooled + 6 * unet["addition_time_embed_dim"] == 2816


def test_config_folders_are_small_and_carry_no_weights():
    files = [p for p in CONFIG_ROOT.rglob("*") if p.is_file() and "clip" not in p.parts]
    assert all(p.suffix in (".json", ".md") for p in files)
    assert sum(p.stat().st_size for p in files) < 100_000
