"""The inverse key map (diffusers -> LDM single file) against diffusers' forward conversion and known file facts."""

from __future__ import annotations

import pytest
import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)

from retouch.models import loading
from retouch.models.ldm_layout import to_ldm_state_dict
from retouch.models.loading import bundled_configs

from .helpers import ALL_FAMILIES, meta_bundle


def _same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    want = {k: v for k, v in want.items() if "position_ids" not in k}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].shape == value.shape, key
        if value.device.type != "meta":
            assert torch.equal(got[key], value), key


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_diffusers_forward_conversion_inverts_ours_on_tiny_models(name, originals):
    bundle = originals[name]
    sd = to_ldm_state_dict(bundle)
    _same(convert_ldm_unet_checkpoint(sd, dict(bundle.unet.config)), bundle.unet.state_dict())
    _same(convert_ldm_vae_checkpoint(sd, dict(bundle.vae.config)), bundle.vae.state_dict())
    first, *rest = bundle.text_encoders
    if bundle.family.base == "sd2":
        _same(convert_open_clip_checkpoint(first, sd), {f"text_model.{k}": v for k, v in first.state_dict().items()})
        return
    clip = convert_ldm_clip_checkpoint(sd)
    _same({k.removeprefix("text_model."): v for k, v in clip.items()}, first.state_dict())
    if rest:
        second = convert_open_clip_checkpoint(rest[0], sd, prefix="conditioner.embedders.1.model.")
        _same(second, rest[0].state_dict())


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_full_size_layout_converts_back_through_the_loader(name):
    """Real SD1/SD2/SDXL sizes on the meta device: every key maps back and fits the bundled configs."""
    bundle = meta_bundle(name)
    sd = to_ldm_state_dict(bundle)
    configs = bundled_configs(bundle.family)
    unet = loading._build_unet(configs["unet"], sd, None)
    vae = loading._build_vae(configs["vae"], sd, None)
    encoders = loading._text_encoders(bundle.family, sd, configs, None)
    for got, want in zip((unet, vae, *encoders), (bundle.unet, bundle.vae, *bundle.text_encoders), strict=True):
        _same(got.state_dict(), want.state_dict())


# Facts about the original single files (key names, shapes, counts, parameter totals).
SD1_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
    "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
    "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
    "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3),
    "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
    "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
    "first_stage_model.decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
    "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
    "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
    "first_stage_model.encoder.down.2.block.0.nin_shortcut.weight": (512, 256, 1, 1),
    "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
    "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
}
SD2_KEYS = {
    "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
    "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight": (3072, 1024),
    "cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.weight": (4096, 1024),
    "cond_stage_model.model.positional_embedding": (77, 1024),
    "cond_stage_model.model.token_embedding.weight": (49408, 1024),
    "cond_stage_model.model.ln_final.bias": (1024,),
}
SDXL_KEYS = {
    "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
    "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight": (1280, 1280),
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight": (640, 2048),
    "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.output_blocks.5.2.conv.weight": (640, 640, 3, 3),
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (768,),
    "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
    "conditioner.embedders.1.model.text_projection": (1280, 1280),
}


@pytest.mark.parametrize(
    ("name", "facts", "counts", "unet_params"),
    [
        ("sd1", SD1_KEYS, {"model.": 686, "first_stage_model.": 248, "cond_stage_model.": 196}, 859_520_964),
        ("sd2-v", SD2_KEYS, {"model.": 686, "first_stage_model.": 248, "cond_stage_model.": 23 * 12 + 4}, 865_910_724),
        ("sdxl", SDXL_KEYS, {"model.": 1680, "first_stage_model.": 248, "conditioner.": 196 + 32 * 12 + 5}, 2_567_463_684),
    ],
)
def test_full_size_keys_match_the_original_files(name, facts, counts, unet_params):
    """Counts per component; sd2-v adds the ``v_pred`` marker; SD2 holds the 23 OpenCLIP layers SD2 uses."""
    sd = to_ldm_state_dict(meta_bundle(name))
    for key, shape in facts.items():
        assert tuple(sd[key].shape) == shape, key
    for prefix, count in counts.items():
        assert sum(k.startswith(prefix) for k in sd) == count, prefix
    assert len(sd) == sum(counts.values()) + (name == "sd2-v")
    assert sum(v.numel() for k, v in sd.items() if k.startswith("model.diffusion_model.")) == unet_params
    assert sum(v.numel() for k, v in sd.items() if k.startswith("first_stage_model.")) == 83_653_863


def test_open_clip_fuses_qkv_and_transposes_the_projection(originals):
    encoder = originals["sdxl"].text_encoders[1]
    sd = to_ldm_state_dict(originals["sdxl"])
    prefix = "conditioner.embedders.1.model."
    attn = encoder.text_model.encoder.layers[1].self_attn
    fused = sd[prefix + "transformer.resblocks.1.attn.in_proj_weight"]
    assert torch.equal(fused, torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
    assert torch.equal(sd[prefix + "text_projection"], encoder.text_projection.weight.T)


def test_vae_attention_becomes_1x1_convs(originals):
    vae = originals["sd1"].vae
    sd = to_ldm_state_dict(originals["sd1"])
    q = sd["first_stage_model.decoder.mid.attn_1.q.weight"]
    assert q.shape == (*vae.decoder.mid_block.attentions[0].to_q.weight.shape, 1, 1)
    assert torch.equal(q[:, :, 0, 0], vae.decoder.mid_block.attentions[0].to_q.weight)


def test_v_pred_marker_only_for_v_models(originals):
    assert [name for name in ALL_FAMILIES if "v_pred" in to_ldm_state_dict(originals[name])] == ["sd2-v"]
