"""LoRA file key names -> the modules of a ModelBundle, as A1111 v1.10.1 matches them (spec §5.2).

A1111 names every patchable module (Linear, Conv2d, GroupNorm, LayerNorm, MultiheadAttention) of its
LDM/OpenCLIP model by ``named_modules()`` with ``.`` -> ``_`` and translates kohya names onto those.
Retouch holds diffusers/transformers modules, so ``ModuleIndex`` gives each of them the name A1111's
module would have:

* UNet: ``diffusion_model_`` + the LDM path from ``ldm_layout.unet_to_ldm``
  (``down_blocks.1.attentions.1.proj_in`` -> ``diffusion_model_input_blocks_5_1_proj_in``);
* OpenAI CLIP (SD1, SDXL encoder 1): ``transformer_text_model_`` + the transformers path, with prefix
  ``0_`` on SDXL;
* OpenCLIP (SD2, SDXL encoder 2, prefix ``1_``), which Retouch loads as transformers CLIP with split
  q/k/v: ``model_transformer_resblocks_N_`` + ``attn_out_proj``, ``mlp_c_fc``, ``mlp_c_proj``, ``ln_1``,
  ``ln_2``, and ``model_ln_final``. A1111's fused ``attn`` (``torch.nn.MultiheadAttention``) becomes an
  *attention group* of our q/k/v/out projections: A1111 changes that layer only when a network has all
  four of ``attn_q_proj``/``k_proj``/``v_proj``/``out_proj`` (``network_apply_weights``) and then drops
  the bias deltas of q/k/v; ``network.bind_network`` applies that rule.

``resolve`` then runs A1111's ``convert_diffusers_name_to_compvis`` and its fallbacks in order: the
translated name; for ``_{q,k,v}_proj`` the attention group; ``lora_unet`` -> ``diffusion_model`` (how
kohya SDXL files, written with LDM names, match); ``lora_te1_text_model`` -> ``0_transformer_text_model``
then ``transformer_text_model``; ``oft_unet`` -> ``diffusion_model``. Unresolved names are None.

Extension beyond A1111 (which ignores them): diffusers/PEFT keys ``unet.<path>``, ``text_encoder.<path>``,
``text_encoder_2.<path>`` on the diffusers/transformers module paths (``resolve_diffusers``); those
modules are changed directly, without the attention-group rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from retouch.models.bundle import ModelBundle
from retouch.models.ldm_layout import unet_to_ldm

__all__ = ["weight_of", "Target", "ModuleIndex", "build_index", "kohya_to_a1111", "resolve", "resolve_diffusers", "COMPONENTS"]

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_PATCHABLE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
_ATTN_PARTS = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclass(frozen=True, eq=False)
class Target:
    """One weight-bearing module: its A1111 name, where it lives in the bundle, and the module itself.

    ``is_text``: A1111 uses the te multiplier (``'transformer'`` in the first 20 characters of its name),
    else the unet one. ``attention``: for OpenCLIP q/k/v/out projections, the A1111 name of the fused
    attention they form (``..._attn``), whose all-four rule applies.
    """

    name: str
    component: str
    path: str
    module: torch.nn.Module
    is_text: bool
    attention: str | None = None


@dataclass(frozen=True)
class ModuleIndex:
    """A1111 names -> Targets, OpenCLIP attention groups, and diffusers paths per component."""

    names: dict[str, Target]
    attention_groups: dict[str, dict[str, Target]]
    diffusers: dict[str, dict[str, Target]] = field(default_factory=dict)
    is_sd2: bool = False
    per_level: int = 3


def _patchable(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Weight-bearing Linear/Conv2d/GroupNorm/LayerNorm modules by path (``text_model.`` stripped)."""
    found: dict[str, torch.nn.Module] = {}
    for path, module in model.named_modules():
        if isinstance(module, _PATCHABLE) and getattr(module, "weight", None) is not None:
            found[path.removeprefix("text_model.")] = module
    return found


def weight_of(module: torch.nn.Module) -> torch.Tensor:
    """``module.weight`` (every indexed module has one)."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _unet_targets(unet: Any) -> list[Target]:
    """The UNet's patchable modules, named as A1111's LDM modules."""
    modules = _patchable(unet)
    keys: dict[str, torch.Tensor] = {f"{path}.weight": weight_of(module) for path, module in modules.items()}
    ldm = unet_to_ldm(keys, int(unet.config.layers_per_block), prefix="")
    targets = []
    for (path, module), new in zip(modules.items(), ldm, strict=True):
        name = "diffusion_model_" + new.removesuffix(".weight").replace(".", "_")
        targets.append(Target(name, "unet", path, module, is_text=False))
    return targets


_OPEN_CLIP_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)")
_OPEN_CLIP_PARTS = {
    "self_attn.out_proj": "attn_out_proj", "mlp.fc1": "mlp_c_fc", "mlp.fc2": "mlp_c_proj",
    "layer_norm1": "ln_1", "layer_norm2": "ln_2",
}


def _open_clip_name(path: str, prefix: str) -> tuple[str | None, str | None]:
    """(A1111 name or None, attention group or None) of a transformers-CLIP path in an OpenCLIP model."""
    if path == "final_layer_norm":
        return f"{prefix}model_ln_final", None
    m = _OPEN_CLIP_LAYER.fullmatch(path)
    if not m:
        return None, None
    block = f"{prefix}model_transformer_resblocks_{m[1]}"
    if m[2] in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
        return f"{block}_attn_{m[2].split('.')[1]}", f"{block}_attn"
    name = _OPEN_CLIP_PARTS.get(m[2])
    if name is None:
        return None, None
    return f"{block}_{name}", f"{block}_attn" if name == "attn_out_proj" else None


def _encoder_targets(encoder: Any, component: str, prefix: str, open_clip: bool) -> list[Target]:
    """A text encoder's patchable modules; those without an A1111 counterpart get the name ``""``."""
    targets = []
    for path, module in _patchable(encoder).items():
        if open_clip:
            name, group = _open_clip_name(path, prefix)
        else:
            name, group = f"{prefix}transformer_text_model_{path.replace('.', '_')}", None
        is_text = "transformer" in name[:20] if name else True
        targets.append(Target(name or "", component, path, module, is_text, group))
    return targets


def build_index(bundle: ModelBundle) -> ModuleIndex:
    """The A1111 names of every patchable module of ``bundle``'s UNet and text encoders (never the VAE)."""
    family = bundle.family
    names: dict[str, Target] = {}
    groups: dict[str, dict[str, Target]] = {}
    diffusers: dict[str, dict[str, Target]] = {c: {} for c in COMPONENTS}
    for target in _unet_targets(bundle.unet):
        names[target.name] = diffusers["unet"][target.path] = target
    for i, encoder in enumerate(bundle.text_encoders):
        component = COMPONENTS[1 + i]
        open_clip = (family.base == "sd2" and i == 0) or (family.is_sdxl and i == 1)
        for target in _encoder_targets(encoder, component, f"{i}_" if family.is_sdxl else "", open_clip):
            diffusers[component][target.path] = target
            if target.attention is not None:
                groups.setdefault(target.attention, {})[target.name.removeprefix(target.attention + "_")] = target
            fused = target.attention is not None and target.name.endswith(("_q_proj", "_k_proj", "_v_proj"))
            if target.name and not fused:  # A1111 has no q/k/v modules, only the fused attention
                names[target.name] = target
    per_level = int(bundle.unet.config.layers_per_block) + 1
    return ModuleIndex(names, groups, diffusers, is_sd2=family.base == "sd2", per_level=per_level)


_RESNET_SUFFIX = {
    "conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0", "norm2": "out_layers_0",
    "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection",
}


def _suffix(kind: str, suffix: str) -> str:
    return _RESNET_SUFFIX.get(suffix, suffix) if kind == "resnets" else suffix


def _open_clip_rest(rest: str) -> str:
    if "mlp_fc1" in rest:
        return rest.replace("mlp_fc1", "mlp_c_fc")
    if "mlp_fc2" in rest:
        return rest.replace("mlp_fc2", "mlp_c_proj")
    return rest.replace("self_attn", "attn")


_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], bool, int], str]]] = [
    (re.compile(r"lora_unet_conv_in(.*)"), lambda m, sd2, n: f"diffusion_model_input_blocks_0_0{m[1]}"),
    (re.compile(r"lora_unet_conv_out(.*)"), lambda m, sd2, n: f"diffusion_model_out_2{m[1]}"),
    (re.compile(r"lora_unet_time_embedding_linear_(\d+)(.*)"),
     lambda m, sd2, n: f"diffusion_model_time_embed_{int(m[1]) * 2 - 2}{m[2]}"),
    (re.compile(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"),
     lambda m, sd2, n: f"diffusion_model_input_blocks_{1 + n * int(m[1]) + int(m[3])}_"
                       f"{1 if m[2] == 'attentions' else 0}_{_suffix(m[2], m[4])}"),
    (re.compile(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)"),
     lambda m, sd2, n: f"diffusion_model_middle_block_{1 if m[1] == 'attentions' else 2 * int(m[2])}_{_suffix(m[1], m[3])}"),
    (re.compile(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"),
     lambda m, sd2, n: f"diffusion_model_output_blocks_{n * int(m[1]) + int(m[3])}_"
                       f"{1 if m[2] == 'attentions' else 0}_{_suffix(m[2], m[4])}"),
    (re.compile(r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv"),
     lambda m, sd2, n: f"diffusion_model_input_blocks_{n + n * int(m[1])}_0_op"),
    (re.compile(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv"),
     lambda m, sd2, n: f"diffusion_model_output_blocks_{n - 1 + n * int(m[1])}_{2 if int(m[1]) > 0 else 1}_conv"),
    (re.compile(r"lora_te_text_model_encoder_layers_(\d+)_(.+)"),
     lambda m, sd2, n: f"model_transformer_resblocks_{m[1]}_{_open_clip_rest(m[2])}" if sd2
     else f"transformer_text_model_encoder_layers_{m[1]}_{m[2]}"),
    (re.compile(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)"),
     lambda m, sd2, n: f"1_model_transformer_resblocks_{m[1]}_{_open_clip_rest(m[2])}"),
]


def kohya_to_a1111(name: str, is_sd2: bool, per_level: int = 3) -> str:
    """A1111's ``convert_diffusers_name_to_compvis``: the first matching rule (spec §5.2 table), else ``name``.

    ``per_level``: LDM blocks per UNet resolution level. A1111 hard-codes 3 (``layers_per_block`` 2, true
    of every SD1/SD2/SDXL model, so the default reproduces it); ``resolve`` passes the model's own
    ``layers_per_block + 1`` so that small test and demo UNets map too. The upsampler slot
    (``2 if b > 0 else 1``) is A1111's SD1 assumption, kept: on SDXL ``up_blocks_0_upsamplers_0_conv``
    maps to a module that does not exist and is dropped, as in A1111.
    """
    for pattern, build in _RULES:
        m = pattern.match(name)
        if m:
            return build(m, is_sd2, per_level)
    return name


_X_PROJ = re.compile(r"(.*)_([qkv]_proj)$")


def resolve(name: str, index: ModuleIndex) -> tuple[str, Target] | None:
    """(A1111 key, Target) for a kohya module name (the part of a file key before the first ``.``)."""
    key = kohya_to_a1111(name, index.is_sd2, index.per_level)
    target = index.names.get(key)
    if target is None and (m := _X_PROJ.match(key)) and m[1] in index.attention_groups:
        target = index.attention_groups[m[1]].get(m[2])
    if target is None and "lora_unet" in name:
        key = name.replace("lora_unet", "diffusion_model")
        target = index.names.get(key)
    elif target is None and "lora_te1_text_model" in name:
        key = name.replace("lora_te1_text_model", "0_transformer_text_model")
        target = index.names.get(key)
        if target is None:
            key = name.replace("lora_te1_text_model", "transformer_text_model")
            target = index.names.get(key)
    elif target is None and "oft_unet" in name:
        key = name.replace("oft_unet", "diffusion_model")
        target = index.names.get(key)
    return (key, target) if target is not None else None


def resolve_diffusers(component: str, path: str, index: ModuleIndex) -> Target | None:
    """The Target of a diffusers/PEFT key's module path (``text_model.`` optional for text encoders)."""
    return index.diffusers.get(component, {}).get(path.removeprefix("text_model."))
