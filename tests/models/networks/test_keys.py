"""Kohya key names -> modules of full-size SD1/SD2/SDXL models (spec §5.2, case 37).

The models are built from the bundled configs on the meta device (shapes only, no memory), so the
module names are those of real checkpoints. Expected A1111 names are the spec's worked translations
(run in A1111 v1.10.1); the diffusers module each must land on follows from the LDM<->diffusers layout.
"""

from __future__ import annotations

import pytest

from retouch.models.networks.keys import build_index, kohya_to_a1111, resolve, resolve_diffusers

from ..helpers import meta_bundle


@pytest.fixture(scope="module")
def index():
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = build_index(meta_bundle(family))
        return cache[family]

    return get


CASE_37 = [
    ("sd1", "lora_unet_down_blocks_1_attentions_1_proj_in", "diffusion_model_input_blocks_5_1_proj_in",
     "unet", "down_blocks.1.attentions.1.proj_in"),
    ("sd1", "lora_unet_down_blocks_2_resnets_1_conv1", "diffusion_model_input_blocks_8_0_in_layers_2",
     "unet", "down_blocks.2.resnets.1.conv1"),
    ("sd1", "lora_unet_down_blocks_1_downsamplers_0_conv", "diffusion_model_input_blocks_6_0_op",
     "unet", "down_blocks.1.downsamplers.0.conv"),
    ("sd1", "lora_unet_mid_block_resnets_1_conv2", "diffusion_model_middle_block_2_out_layers_3",
     "unet", "mid_block.resnets.1.conv2"),
    ("sd1", "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0",
     "diffusion_model_output_blocks_11_1_transformer_blocks_0_attn2_to_out_0",
     "unet", "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0"),
    ("sd1", "lora_unet_up_blocks_0_upsamplers_0_conv", "diffusion_model_output_blocks_2_1_conv",
     "unet", "up_blocks.0.upsamplers.0.conv"),
    ("sd1", "lora_unet_up_blocks_2_upsamplers_0_conv", "diffusion_model_output_blocks_8_2_conv",
     "unet", "up_blocks.2.upsamplers.0.conv"),
    ("sd1", "lora_unet_time_embedding_linear_2", "diffusion_model_time_embed_2", "unet", "time_embedding.linear_2"),
    ("sd2", "lora_te_text_model_encoder_layers_5_mlp_fc1", "model_transformer_resblocks_5_mlp_c_fc",
     "text_encoder", "encoder.layers.5.mlp.fc1"),
    ("sdxl", "lora_te2_text_model_encoder_layers_3_mlp_fc2", "1_model_transformer_resblocks_3_mlp_c_proj",
     "text_encoder_2", "encoder.layers.3.mlp.fc2"),
]


@pytest.mark.parametrize(("family", "kohya", "a1111", "component", "path"), CASE_37)
def test_worked_translations_land_on_the_right_module(index, family, kohya, a1111, component, path):
    assert kohya_to_a1111(kohya, is_sd2=family == "sd2") == a1111
    key, target = resolve(kohya, index(family))
    assert (key, target.component, target.path) == (a1111, component, path)


@pytest.mark.parametrize(("family", "kohya", "key", "component", "path"), [
    # kohya SDXL files use LDM names; they match through lora_unet -> diffusion_model
    ("sdxl", "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k",
     "diffusion_model_input_blocks_4_1_transformer_blocks_0_attn1_to_k",
     "unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k"),
    ("sdxl", "lora_unet_output_blocks_2_2_conv", "diffusion_model_output_blocks_2_2_conv",
     "unet", "up_blocks.0.upsamplers.0.conv"),
    ("sdxl", "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
     "0_transformer_text_model_encoder_layers_0_self_attn_q_proj", "text_encoder", "encoder.layers.0.self_attn.q_proj"),
    ("sd1", "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
     "transformer_text_model_encoder_layers_0_self_attn_q_proj", "text_encoder", "encoder.layers.0.self_attn.q_proj"),
    ("sd1", "lora_te_text_model_encoder_layers_11_self_attn_out_proj",
     "transformer_text_model_encoder_layers_11_self_attn_out_proj", "text_encoder", "encoder.layers.11.self_attn.out_proj"),
    # OpenCLIP q/k/v: the key keeps the long name, the module is our split projection
    ("sdxl", "lora_te2_text_model_encoder_layers_0_self_attn_q_proj", "1_model_transformer_resblocks_0_attn_q_proj",
     "text_encoder_2", "encoder.layers.0.self_attn.q_proj"),
    ("sd2", "lora_te_text_model_encoder_layers_2_self_attn_v_proj", "model_transformer_resblocks_2_attn_v_proj",
     "text_encoder", "encoder.layers.2.self_attn.v_proj"),
    ("sd2", "lora_te_text_model_encoder_layers_2_self_attn_out_proj", "model_transformer_resblocks_2_attn_out_proj",
     "text_encoder", "encoder.layers.2.self_attn.out_proj"),
])
def test_fallbacks(index, family, kohya, key, component, path):
    found_key, target = resolve(kohya, index(family))
    assert (found_key, target.component, target.path) == (key, component, path)


@pytest.mark.parametrize(("family", "kohya"), [
    ("sdxl", "lora_unet_up_blocks_0_upsamplers_0_conv"),  # A1111's SD1 slot rule: output_blocks_2_1 (spec gap)
    ("sdxl", "lora_te2_text_model_encoder_layers_0_layer_norm1"),  # OpenCLIP calls it ln_1
    ("sdxl", "lora_te2_text_projection"),
    ("sd2", "lora_te_text_model_encoder_layers_23_mlp_fc1"),  # SD2 uses 23 of OpenCLIP's 24 layers
    ("sd1", "lora_unet_conv_norm_out"),  # no translation rule, no LDM module of that name
    ("sd1", "lora_te_text_model_embeddings_token_embedding"),  # an Embedding: never patched
])
def test_names_a1111_does_not_match(index, family, kohya):
    assert resolve(kohya, index(family)) is None


def test_multiplier_kind_follows_the_a1111_name(index):
    """te iff 'transformer' is in the first 20 characters: true for every encoder module except
    OpenCLIP's final LayerNorm (``model_ln_final``), false for every UNet module."""
    sd2 = index("sd2")
    assert sd2.names["model_transformer_resblocks_0_mlp_c_fc"].is_text
    assert not sd2.names["model_ln_final"].is_text
    sdxl = index("sdxl")
    assert sdxl.names["0_transformer_text_model_final_layer_norm"].is_text
    assert not any(t.is_text for t in sdxl.names.values() if t.component == "unet")
    assert all(t.is_text for t in sdxl.names.values() if t.component == "text_encoder")


def test_every_patchable_module_has_one_a1111_name(index):
    """UNet: every Linear/Conv/Norm gets a distinct LDM name; the VAE is never indexed."""
    for family in ("sd1", "sd2", "sdxl"):
        idx = index(family)
        unet = [t for t in idx.names.values() if t.component == "unet"]
        assert len(unet) == len(idx.diffusers["unet"]) > 300
        assert {t.component for t in idx.names.values()} <= {"unet", "text_encoder", "text_encoder_2"}
    assert len(index("sd2").attention_groups) == 23 and len(index("sdxl").attention_groups) == 32


def test_diffusers_peft_paths(index):
    idx = index("sdxl")
    t = resolve_diffusers("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k", idx)
    assert t is not None and t.path == "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k"
    t2 = resolve_diffusers("text_encoder_2", "text_model.encoder.layers.0.self_attn.q_proj", idx)
    assert t2 is not None and t2.component == "text_encoder_2"
    assert resolve_diffusers("vae", "encoder.conv_in", idx) is None
