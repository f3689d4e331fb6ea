"""Diffusers/transformers state dicts -> the original LDM single-file key layout (what A1111 loads).

The inverse of diffusers' single-file conversion (``diffusers.loaders.single_file_utils``), which
ships only the LDM -> diffusers direction. Used by tests and by the demo-model trainer to write
checkpoints that A1111, ComfyUI and ``retouch.load_model`` all open:

* UNet under ``model.diffusion_model.``: diffusers' down/mid/up blocks become the flat
  ``input_blocks.N``/``middle_block.N``/``output_blocks.N`` lists, ``layers_per_block + 1`` entries
  per resolution level; resnet parts ``norm1/conv1/time_emb_proj/norm2/conv2/conv_shortcut`` become
  ``in_layers.0/in_layers.2/emb_layers.1/out_layers.0/out_layers.3/skip_connection``.
* VAE under ``first_stage_model.``: ``down_blocks``/``up_blocks`` become ``down.N.block``/``up.N.block``
  (decoder levels numbered in reverse), the mid attention ``to_q/to_k/to_v/to_out.0`` becomes
  ``q/k/v/proj_out`` as 1x1 conv weights.
* OpenAI CLIP (SD1; SDXL encoder 1) under ``cond_stage_model.transformer.text_model.`` or
  ``conditioner.embedders.0.transformer.text_model.``: the transformers keys unchanged.
* OpenCLIP (SD2; SDXL encoder 2) under ``cond_stage_model.model.`` or ``conditioner.embedders.1.model.``:
  ``resblocks.N`` with fused ``attn.in_proj_weight`` (q, k, v stacked), ``ln_1/ln_2``, ``mlp.c_fc/c_proj``,
  ``positional_embedding``, ``ln_final`` and ``text_projection`` stored transposed (x @ P).

SD2's OpenCLIP has 24 layers of which SD2 uses 23 (penultimate output); the diffusers model holds 23
and so does the file written here (A1111 loads non-strictly; the unused last layer is not written).
v-prediction models get an empty ``v_pred`` tensor, the marker ComfyUI writes and ``detect.py`` reads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from retouch.models.bundle import ModelBundle

__all__ = [
    "UNET_PREFIX", "VAE_PREFIX", "unet_to_ldm", "vae_to_ldm", "clip_to_ldm", "open_clip_to_ldm",
    "to_ldm_state_dict", "save_ldm_checkpoint", "config_metadata", "CONFIG_METADATA_KEY",
]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer.text_model."
SD2_OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

# The safetensors metadata key under which save_ldm_checkpoint stores the diffusers configs as one JSON
# object {"family": ..., "unet": {...}, "vae": {...}, "text_encoder": {...}[, "text_encoder_2": {...}]}, so
# that a file with a non-standard architecture (tiny test models, the demo model) loads without a config
# folder. One key only: safetensors writes several metadata keys in an unstable order.
CONFIG_METADATA_KEY = "retouch.configs"

Tensors = Mapping[str, torch.Tensor]

_RESNET_PARTS = (
    ("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection."),
)
_UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
}


def _resnet_rest(rest: str) -> str:
    for new, old in _RESNET_PARTS:
        if rest.startswith(new):
            return old + rest[len(new):]
    raise ValueError(f"unexpected UNet resnet parameter {rest!r}")


def _unet_key(key: str, per_level: int, up_has_attn: Callable[[int], bool]) -> str:
    """One diffusers UNet key -> its LDM key (without prefix); ``per_level`` = layers_per_block + 1."""
    for new, old in _UNET_FIXED.items():
        if key.startswith(new):
            return old + key[len(new):]
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * per_level + layer
        return f"input_blocks.{index}.0.{_resnet_rest(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key):
        if m[1] == "resnets":
            return f"middle_block.{2 * int(m[2])}.{_resnet_rest(m[3])}"
        return f"middle_block.1.{m[3]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per_level + layer
        return f"output_blocks.{index}.0.{_resnet_rest(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        slot = 2 if up_has_attn(block) else 1
        return f"output_blocks.{block * per_level + per_level - 1}.{slot}.conv.{m[2]}"
    raise ValueError(f"unexpected diffusers UNet parameter {key!r}")


def unet_to_ldm(state_dict: Tensors, layers_per_block: int, prefix: str = UNET_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict in LDM ``openaimodel.UNetModel`` keys."""
    attn_blocks = {int(k.split(".")[1]) for k in state_dict if k.startswith("up_blocks.") and ".attentions." in k}
    per_level = layers_per_block + 1
    return {
        prefix + _unet_key(k, per_level, attn_blocks.__contains__): v for k, v in state_dict.items()
    }


_VAE_FIXED = {"conv_norm_out.": "norm_out.", "conv_in.": "conv_in.", "conv_out.": "conv_out."}
_VAE_ATTN = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def _vae_key(key: str, num_up: int) -> str:
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    side, _, rest = key.partition(".")
    for new, old in _VAE_FIXED.items():
        if rest.startswith(new):
            return f"{side}.{old}{rest[len(new):]}"
    if m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0|upsamplers\.0)\.(.+)", rest):
        kind, level, part, tail = m[1], int(m[2]), m[3], m[5]
        level = level if kind == "down" else num_up - 1 - level
        if part.startswith("resnets"):
            tail = tail.replace("conv_shortcut.", "nin_shortcut.")
            return f"{side}.{kind}.{level}.block.{m[4]}.{tail}"
        return f"{side}.{kind}.{level}.{'downsample' if kind == 'down' else 'upsample'}.{tail}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
        return f"{side}.mid.block_{int(m[1]) + 1}.{m[2].replace('conv_shortcut.', 'nin_shortcut.')}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
        for new, old in _VAE_ATTN.items():
            if m[1].startswith(new):
                return f"{side}.mid.attn_1.{old}{m[1][len(new):]}"
    raise ValueError(f"unexpected diffusers VAE parameter {key!r}")


def vae_to_ldm(state_dict: Tensors, prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict in LDM ``AutoencoderKL`` keys (attention as 1x1 convs)."""
    num_up = len({k.split(".")[2] for k in state_dict if k.startswith("decoder.up_blocks.")})
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        ldm = _vae_key(key, num_up)
        is_attn_matrix = ".mid.attn_1." in ldm and ldm.endswith(".weight") and value.ndim == 2
        out[prefix + ldm] = value[:, :, None, None] if is_attn_matrix else value
    return out


def clip_to_ldm(state_dict: Tensors, prefix: str = SD1_CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPTextModel`` state dict under ``prefix`` (which ends in ``text_model.``)."""
    return {prefix + k.removeprefix("text_model."): v for k, v in state_dict.items() if "position_ids" not in k}


_OPEN_CLIP_LAYER = (
    ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."), ("self_attn.out_proj.", "attn.out_proj."),
)
_OPEN_CLIP_FIXED = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}


def open_clip_to_ldm(state_dict: Tensors, prefix: str = SD2_OPEN_CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model (with or without projection) in OpenCLIP ``TextTransformer`` keys."""
    sd = {k.removeprefix("text_model."): v for k, v in state_dict.items() if "position_ids" not in k}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key in _OPEN_CLIP_FIXED:
            out[prefix + _OPEN_CLIP_FIXED[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key):
            block, rest = f"{prefix}transformer.resblocks.{m[1]}.", m[2]
            if q := re.fullmatch(r"self_attn\.q_proj\.(weight|bias)", rest):
                base = f"encoder.layers.{m[1]}.self_attn."
                fused = torch.cat([sd[f"{base}{p}_proj.{q[1]}"] for p in "qkv"])
                out[f"{block}attn.in_proj_{q[1]}"] = fused
            elif not re.fullmatch(r"self_attn\.[kv]_proj\.(weight|bias)", rest):
                new, old = next((n, o) for n, o in _OPEN_CLIP_LAYER if rest.startswith(n))
                out[block + old + rest[len(new):]] = value
        else:
            raise ValueError(f"unexpected CLIP text-model parameter {key!r}")
    return out


def to_ldm_state_dict(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    """The whole model in one LDM/A1111 single-file state dict (views of the bundle's tensors).

    SD1: OpenAI CLIP under ``cond_stage_model.transformer``; SD2: OpenCLIP under ``cond_stage_model.model``;
    SDXL: both under ``conditioner.embedders.0/1``. v-prediction families get the ``v_pred`` marker.
    """
    unet, family = bundle.unet, bundle.family
    out = unet_to_ldm(unet.state_dict(), int(unet.config.layers_per_block))
    out.update(vae_to_ldm(bundle.vae.state_dict()))
    encoders = [e.state_dict() for e in bundle.text_encoders]
    if family.base == "sd1":
        out.update(clip_to_ldm(encoders[0], SD1_CLIP_PREFIX))
    elif family.base == "sd2":
        out.update(open_clip_to_ldm(encoders[0], SD2_OPEN_CLIP_PREFIX))
    else:
        out.update(clip_to_ldm(encoders[0], SDXL_CLIP_PREFIX))
        out.update(open_clip_to_ldm(encoders[1], SDXL_OPEN_CLIP_PREFIX))
    if family.prediction == "v_prediction":
        out["v_pred"] = torch.tensor([])
    return out


def _clean_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config without bookkeeping keys (``_use_default_values``, versions)."""
    kept = {k: v for k, v in config.items() if not k.startswith("_") or k == "_class_name"}
    kept.pop("transformers_version", None)
    return json.loads(json.dumps(kept))


def config_metadata(bundle: ModelBundle) -> dict[str, str]:
    """The bundle's diffusers/transformers configs as safetensors metadata (one deterministic JSON string)."""
    configs: dict[str, Any] = {
        "family": bundle.family.name,
        "unet": _clean_config(bundle.unet.config),
        "vae": _clean_config(bundle.vae.config),
    }
    for key, encoder in zip(("text_encoder", "text_encoder_2"), bundle.text_encoders, strict=False):
        config = encoder.config.to_diff_dict()
        config["architectures"] = [type(encoder).__name__]
        configs[key] = _clean_config(config)
    return {CONFIG_METADATA_KEY: json.dumps(configs, sort_keys=True)}


def save_ldm_checkpoint(
    bundle: ModelBundle, path: str | os.PathLike[str], *, embed_configs: bool = True, dtype: torch.dtype | None = None
) -> None:
    """Write ``bundle`` as one LDM-layout ``.safetensors`` file (A1111/ComfyUI loadable).

    With ``embed_configs`` the diffusers configs travel in the file's metadata, so that a checkpoint of
    a non-standard architecture (tiny or demo models) loads with ``load_model`` without a config folder.
    ``dtype`` casts floating tensors (e.g. ``torch.float16`` for a half-size file).
    """
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    for key, value in to_ldm_state_dict(bundle).items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    save_file(tensors, os.fspath(path), metadata=config_metadata(bundle) if embed_configs else None)
