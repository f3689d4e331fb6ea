"""Which model family a checkpoint is, from its state-dict key names and tensor shapes (pure).

Rules (single-file LDM/A1111 layout):

* The UNet's first convolution ``model.diffusion_model.input_blocks.0.0.weight`` must exist; its
  input channels give the conditioning: 4 plain, 9 inpainting ([x, mask, masked latent]), 8
  instruct-pix2pix ([x, image latent]) (spec §4).
* The text encoder's keys give the base: ``conditioner.embedders.1.model.`` (OpenCLIP bigG) is SDXL,
  ``cond_stage_model.model.`` (OpenCLIP ViT-H) is SD2, ``cond_stage_model.transformer.`` (OpenAI CLIP)
  is SD1. The UNet's cross-attention width (``attn2.to_k`` input features) must equal the text
  encoder's width (SDXL: the sum of both), which rejects mixed or broken files. Widths are never
  compared against fixed sizes, so tiny test models follow the same rules as real ones.
* SD2 v-prediction has no structural marker. This function says ``sd2-v`` only when the file carries
  the ``v_pred`` key (the marker ComfyUI and ``ldm_layout.save_ldm_checkpoint`` write); otherwise it
  says ``sd2``. ``loading.load_model`` then refines a plain ``sd2`` answer the way A1111 does (a
  ``<name>.yaml`` beside the file with ``parameterization: "v"``, else A1111's UNet probe), and its
  ``family=`` argument overrides everything.

An unknown layout raises ValueError naming what was found (key prefixes, channel counts, widths).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from retouch.models.families import FAMILIES, Family

__all__ = ["detect_family", "detect_family_diffusers", "describe_layout", "V_PRED_KEY", "UNET_CONV_IN"]

Shapes = Mapping[str, Sequence[int]]

UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
V_PRED_KEY = "v_pred"
_SD1_CLIP = "cond_stage_model.transformer."
_SD2_OPEN_CLIP = "cond_stage_model.model."
_SDXL_CLIP = "conditioner.embedders.0.transformer."
_SDXL_OPEN_CLIP = "conditioner.embedders.1.model."
_SDXL_REFINER_OPEN_CLIP = "conditioner.embedders.0.model."
_CONDITIONING = {4: "plain", 9: "inpaint", 8: "edit"}
_CROSS_ATTN_K = re.compile(r"model\.diffusion_model\..*\.attn2\.to_k\.weight")


def describe_layout(shapes: Shapes) -> str:
    """A one-line summary of a state dict for error messages: key prefixes, channels, widths."""
    prefixes = Counter(".".join(k.split(".")[:2]) for k in shapes)
    top = ", ".join(f"{p} ({n})" for p, n in prefixes.most_common(8))
    parts = [f"{len(shapes)} tensors", f"key prefixes: {top or 'none'}"]
    if UNET_CONV_IN in shapes:
        parts.append(f"UNet input channels: {shapes[UNET_CONV_IN][1]}")
    context = _context_width(shapes)
    if context is not None:
        parts.append(f"cross-attention width: {context}")
    return "; ".join(parts)


def _context_width(shapes: Shapes) -> int | None:
    for key, shape in shapes.items():
        if _CROSS_ATTN_K.fullmatch(key):
            return int(shape[-1])
    return None


def _has_prefix(shapes: Shapes, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in shapes)


def _token_width(shapes: Shapes, prefix: str) -> int | None:
    for key, shape in shapes.items():
        if key.startswith(prefix) and key.endswith("token_embedding.weight"):
            return int(shape[-1])
    return None


def _base_and_text_width(shapes: Shapes) -> tuple[str, int | None]:
    """("sd1" | "sd2" | "sdxl", the text conditioning width) from the text-encoder keys."""
    if _has_prefix(shapes, _SDXL_OPEN_CLIP):
        widths = (_token_width(shapes, _SDXL_CLIP), _token_width(shapes, _SDXL_OPEN_CLIP))
        return "sdxl", None if None in widths else sum(w for w in widths if w is not None)
    if _has_prefix(shapes, _SDXL_REFINER_OPEN_CLIP):
        raise ValueError(f"SDXL refiner checkpoints are not supported (found {describe_layout(shapes)})")
    if _has_prefix(shapes, _SD2_OPEN_CLIP):
        return "sd2", _token_width(shapes, _SD2_OPEN_CLIP)
    if _has_prefix(shapes, _SD1_CLIP):
        return "sd1", _token_width(shapes, _SD1_CLIP)
    raise ValueError(
        "unknown checkpoint layout: no supported text encoder (expected keys under "
        f"{_SD1_CLIP!r}, {_SD2_OPEN_CLIP!r} or {_SDXL_OPEN_CLIP!r}); found {describe_layout(shapes)}"
    )


def family_for(base: str, in_channels: int, prediction: str, found: str) -> Family:
    """The family with this base, UNet input channels and prediction type; ValueError naming ``found``."""
    conditioning = _CONDITIONING.get(in_channels)
    for family in FAMILIES.values():
        if (family.base, family.conditioning, family.prediction) == (base, conditioning, prediction):
            return family
    raise ValueError(
        f"unsupported model: {base} with {in_channels} UNet input channels and {prediction} prediction "
        f"(supported: {', '.join(f'{f.name} ({f.unet_in_channels} ch)' for f in FAMILIES.values())}); "
        f"found {found}"
    )


def detect_family(keys_and_shapes: Shapes) -> Family:
    """The family of an LDM/A1111 single-file state dict, given its key names and tensor shapes.

    ``keys_and_shapes`` maps every key to its shape (e.g. ``{k: tuple(t.shape) for k, t in sd.items()}``).
    Returns one of ``families.FAMILIES``; see the module docstring for the rules.
    """
    shapes = keys_and_shapes
    if UNET_CONV_IN not in shapes or len(shapes[UNET_CONV_IN]) != 4:
        raise ValueError(
            f"unknown checkpoint layout: no LDM UNet ({UNET_CONV_IN!r} missing); found {describe_layout(shapes)}"
        )
    base, text_width = _base_and_text_width(shapes)
    context = _context_width(shapes)
    if context is not None and text_width is not None and context != text_width:
        raise ValueError(
            f"inconsistent checkpoint: the UNet's cross-attention width {context} does not match the "
            f"{base} text encoder width {text_width}; found {describe_layout(shapes)}"
        )
    prediction = "v_prediction" if V_PRED_KEY in shapes and base == "sd2" else "epsilon"
    if V_PRED_KEY in shapes and base != "sd2":
        raise ValueError(f"unsupported model: v-prediction {base} checkpoint; found {describe_layout(shapes)}")
    in_channels = int(shapes[UNET_CONV_IN][1])
    if prediction == "v_prediction" and in_channels != 4:
        raise ValueError(f"unsupported model: v-prediction {base} with {in_channels} input channels")
    return family_for(base, in_channels, prediction, describe_layout(shapes))


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"not a complete diffusers model folder: {path} is missing") from None
    except ValueError as exc:
        raise ValueError(f"cannot parse {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def detect_family_diffusers(folder: str | os.PathLike[str]) -> Family:
    """The family of a diffusers-format model folder, from its ``model_index.json`` and configs.

    SDXL: a ``text_encoder_2`` component or ``addition_embed_type: text_time``; SD2 vs SD1: the text
    encoder's activation (OpenCLIP ``gelu`` vs OpenAI CLIP ``quick_gelu``); conditioning: the UNet's
    ``in_channels``; prediction: the scheduler's ``prediction_type`` (default epsilon).
    """
    root = Path(folder)
    index = _read_json(root / "model_index.json")
    unet = _read_json(root / "unet" / "config.json")
    scheduler_file = root / "scheduler" / "scheduler_config.json"
    prediction = str(_read_json(scheduler_file).get("prediction_type", "epsilon")) if scheduler_file.exists() else "epsilon"
    if "text_encoder_2" in index or unet.get("addition_embed_type") == "text_time":
        base = "sdxl"
    else:
        act = _read_json(root / "text_encoder" / "config.json").get("hidden_act")
        if act not in ("gelu", "quick_gelu"):
            raise ValueError(f"unknown text encoder in {root}: hidden_act {act!r} (expected quick_gelu or gelu)")
        base = "sd2" if act == "gelu" else "sd1"
    in_channels = unet.get("in_channels", 4)
    found = f"{index.get('_class_name')} in {root} (unet in_channels {in_channels}, prediction {prediction})"
    return family_for(base, int(in_channels), prediction, found)  # type: ignore[call-overload]
