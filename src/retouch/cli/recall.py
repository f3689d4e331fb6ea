"""``--from-infotext``: the Img2Img fields stored in an image's A1111 infotext (spec §6).

Unlike A1111's img2img API (spec §5.5), which takes only a few sampler and seed keys from an infotext,
the CLI re-runs everything the infotext records: prompts, steps, sampler and schedule, CFG, seeds,
size, denoising strength, mask settings and noise settings. Numbers keep their written form (``7``
stays an int, ``7.0`` a float), so a re-run writes the same infotext again. Keys that are absent leave
the command's own value (A1111's paste semantics), except the absent-key defaults of spec §6.2, which
:func:`retouch.infotext.parse_infotext` fills in. The model is not switched: ``Model``/``Model hash``
are reported by :func:`model_mismatch` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from retouch.cli.errors import CliError
from retouch.formats.png import read_infotext
from retouch.info import soft_mask_fields
from retouch.infotext import parse_infotext
from retouch.params import EMPHASIS_MODES, MaskedContent, ParamError

__all__ = ["recall_fields", "fields_from_infotext", "model_mismatch"]

_INT = re.compile(r"^[+-]?\d+$")


def _int(text: str) -> int:
    if not _INT.match(text.strip()):
        raise ValueError(f"expected an integer, got {text!r}")
    return int(text)


def _number(text: str) -> int | float:
    """``"7"`` -> 7, ``"7.0"`` -> 7.0: the written form decides, so infotext writes back identically."""
    return _int(text) if _INT.match(text.strip()) else float(text)


def _flag(text: str) -> bool:
    if text not in ("True", "False"):
        raise ValueError(f"expected True or False, got {text!r}")
    return text == "True"


def _choice(table: Mapping[str, Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if text not in table:
            raise ValueError(f"expected one of {', '.join(map(repr, table))}, got {text!r}")
        return table[text]

    return convert


_MASKED_CONTENT = {
    "fill": MaskedContent.FILL,
    "original": MaskedContent.ORIGINAL,
    "latent noise": MaskedContent.LATENT_NOISE,
    "latent nothing": MaskedContent.LATENT_NOTHING,
}

#: infotext key -> (Img2Img field, converter)
_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "Prompt": ("prompt", str),
    "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", _int),
    "Sampler": ("sampler_name", str),
    "Schedule type": ("scheduler", str),
    "CFG scale": ("cfg_scale", _number),
    "Image CFG scale": ("image_cfg_scale", _number),
    "Seed": ("seed", _int),
    "Variation seed": ("subseed", _int),
    "Variation seed strength": ("subseed_strength", _number),
    "Seed resize from-1": ("seed_resize_from_w", _int),
    "Seed resize from-2": ("seed_resize_from_h", _int),
    "Size-1": ("width", _int),
    "Size-2": ("height", _int),
    "Denoising strength": ("denoising_strength", _number),
    "Conditional mask weight": ("inpainting_mask_weight", _number),
    "Clip skip": ("clip_skip", _int),
    "Emphasis": ("emphasis", _choice({m: m for m in EMPHASIS_MODES})),
    "ENSD": ("eta_noise_seed_delta", _int),
    "Mask blur": ("mask_blur", _int),
    "Mask mode": ("inpainting_mask_invert", _choice({"Inpaint masked": 0, "Inpaint not masked": 1})),
    "Inpaint area": ("inpaint_full_res", _choice({"Whole picture": False, "Only masked": True})),
    "Masked area padding": ("inpaint_full_res_padding", _int),
    "Masked content": ("inpainting_fill", _choice(_MASKED_CONTENT)),
    "Noise multiplier": ("initial_noise_multiplier", _number),
    "Extra noise": ("img2img_extra_noise", _number),
    "Eta": ("eta", _number),
    "Eta DDIM": ("eta", _number),
    "Sigma churn": ("s_churn", _number),
    "Sigma tmin": ("s_tmin", _number),
    "Sigma tmax": ("s_tmax", _number),
    "Sigma noise": ("s_noise", _number),
    "NGMS": ("s_min_uncond", _number),
    "NGMS all steps": ("s_min_uncond_all", _flag),
    "Skip Early CFG": ("skip_early_cond", _number),
    "Pad conds": ("pad_cond_uncond", _flag),
    "Pad conds v0": ("pad_cond_uncond_v0", _flag),
    "Token merging ratio": ("token_merging_ratio", _number),
    "Feature cache interval": ("feature_cache_interval", _int),
    "Feature cache depth": ("feature_cache_depth", _int),
}


def fields_from_infotext(parsed: Mapping[str, object], source: str = "infotext") -> dict[str, Any]:
    """Img2Img keyword arguments from a :func:`parse_infotext` result; bad values raise CliError."""
    fields: dict[str, Any] = {}
    for key, (name, convert) in _KEYS.items():
        if key not in parsed:
            continue
        text = str(parsed[key])
        try:
            fields[name] = convert(text)
        except ValueError as exc:
            raise CliError(f"{source}: cannot use '{key}: {text}': {exc}") from None
    try:
        fields.update(soft_mask_fields(parsed))
    except ParamError as exc:
        raise CliError(f"{source}: {exc}") from None
    return fields


def recall_fields(path: Path) -> tuple[dict[str, Any], dict[str, object]]:
    """Read ``path``'s infotext; return (Img2Img fields, the parsed infotext). CliError when absent."""
    try:
        text = read_infotext(path)
    except (OSError, ValueError) as exc:
        raise CliError(f"--from-infotext: {exc}") from None
    if not text:
        raise CliError(f"--from-infotext: {path} holds no generation parameters")
    parsed = parse_infotext(text)
    return fields_from_infotext(parsed, f"--from-infotext {path}"), parsed


def model_mismatch(parsed: Mapping[str, object], name: str | None, hash_: str | None) -> str | None:
    """A note when the infotext names another model than the loaded one (the re-run will differ)."""
    want_hash, want_name = parsed.get("Model hash"), parsed.get("Model")
    if want_hash is not None and hash_ is not None and want_hash != hash_:
        return (
            f"note: the infotext was made with model {want_name or '?'} [{want_hash}]; using {name} [{hash_}]"
        )
    return None
