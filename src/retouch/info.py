"""Generation parameters of one output image, in A1111's infotext key order (spec §6.2).

``generation_params`` builds the ordered key/value mapping; ``retouch.infotext.format_infotext``
turns it into text. The order is A1111's fixed list first (each key only when it applies), then the
img2img extras in insertion order, then ``Version``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retouch.params import (
    SOFT_INPAINTING_HOOKS,
    DifferentialDiffusion,
    Img2Img,
    MaskedContent,
    ParamError,
    SoftInpainting,
)

__all__ = ["ModelIdentity", "generation_params", "soft_mask_params", "soft_mask_fields", "VERSION"]

VERSION = "retouch 0.1.0"

_MASKED_CONTENT = {
    MaskedContent.FILL: "fill",
    MaskedContent.LATENT_NOISE: "latent noise",
    MaskedContent.LATENT_NOTHING: "latent nothing",
}


@dataclass(frozen=True)
class ModelIdentity:
    """What the infotext says about the model: name, hash, VAE, and which conditioning it uses."""

    name: str | None
    hash: str | None
    vae_name: str | None = None
    vae_hash: str | None = None
    inpainting: bool = False
    edit: bool = False


def _mask_params(job: Img2Img, masked: bool) -> dict[str, Any]:
    if not masked:
        return {}
    out: dict[str, Any] = {}
    if job.inpainting_mask_invert:
        out["Mask mode"] = "Inpaint not masked"
    if job.mask_blur_x > 0 or job.mask_blur_y > 0:
        out["Mask blur"] = job.mask_blur
    if job.inpaint_full_res:
        out["Inpaint area"] = "Only masked"
        out["Masked area padding"] = job.inpaint_full_res_padding
    if job.inpainting_fill != MaskedContent.ORIGINAL:
        out["Masked content"] = _MASKED_CONTENT[MaskedContent(job.inpainting_fill)]
    return out


def _sampler_params(job: Img2Img, eta_default: float | None, uses_churn: bool, uses_s_noise: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if job.initial_noise_multiplier != 1.0:
        out["Noise multiplier"] = job.initial_noise_multiplier
    if job.img2img_extra_noise > 0:
        out["Extra noise"] = job.img2img_extra_noise
    if eta_default is not None and job.eta is not None and job.eta != eta_default:
        out["Eta DDIM" if eta_default == 0.0 else "Eta"] = job.eta
    if uses_churn:
        for key, value, default in (("Sigma churn", job.s_churn, 0.0), ("Sigma tmin", job.s_tmin, 0.0),
                                    ("Sigma tmax", job.s_tmax, 0.0)):
            if value != default:
                out[key] = value
    if uses_s_noise and job.s_noise != 1.0:
        out["Sigma noise"] = job.s_noise
    return out


def generation_params(
    job: Img2Img,
    *,
    seed: int,
    subseed: int,
    width: int,
    height: int,
    sampler_name: str,
    schedule_label: str,
    model: ModelIdentity,
    masked: bool,
    eta_default: float | None = None,
    uses_churn: bool = False,
    uses_s_noise: bool = False,
    prompt_params: Mapping[str, Any] | None = None,
    speed_params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Ordered infotext parameters of one image (spec §6.2); values None are dropped by the formatter.

    ``prompt_params`` are what A1111's networks and text encoder add during the batch (``Lora hashes``,
    ``TI hashes``, ``Emphasis``): after the mask keys set in ``init``, before the sampler's keys.
    ``speed_params`` (``retouch.speed.speed_params``: NGMS, Skip Early CFG, Pad conds, set by A1111 during
    and after sampling) follow the sampler's keys.
    """
    variation = job.subseed_strength != 0
    params: dict[str, Any] = {
        "Steps": job.steps,
        "Sampler": sampler_name,
        "Schedule type": schedule_label,
        "CFG scale": job.cfg_scale,
        "Image CFG scale": job.image_cfg_scale if model.edit else None,
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": model.hash,
        "Model": model.name,
        "VAE hash": model.vae_hash,
        "VAE": model.vae_name,
        "Variation seed": subseed if variation else None,
        "Variation seed strength": job.subseed_strength if variation else None,
        "Seed resize from": (
            f"{job.seed_resize_from_w}x{job.seed_resize_from_h}"
            if job.seed_resize_from_w > 0 and job.seed_resize_from_h > 0 else None
        ),
        "Denoising strength": job.denoising_strength,
        "Conditional mask weight": job.inpainting_mask_weight if model.inpainting else None,
        "Clip skip": job.clip_skip if job.clip_skip > 1 else None,
        "ENSD": job.eta_noise_seed_delta if job.eta_noise_seed_delta else None,
        "Token merging ratio": job.token_merging_ratio if job.token_merging_ratio else None,
        "RNG": "CPU",
    }
    if job.soft_inpainting is not None and job.mask is not None:  # before Mask blur (soft-masks.md §1.10)
        params.update(job.soft_inpainting.infotext())
    params.update(_mask_params(job, masked))
    params.update(prompt_params or {})
    params.update(_sampler_params(job, eta_default, uses_churn, uses_s_noise))
    params.update(speed_params or {})
    params.update(soft_mask_params(job, masked))
    params["Version"] = VERSION
    return {k: v for k, v in params.items() if v is not None}


def soft_mask_params(job: Img2Img, masked: bool) -> dict[str, Any]:
    """Retouch-only soft-mask keys, only where not at their A1111 default (spec soft-masks.md §5.3)."""
    if not masked:
        return {}
    out: dict[str, Any] = {}
    dd = job.differential_diffusion
    if dd is not None:
        out["Differential diffusion"] = dd.strength
        if dd.thresholds != "timestep":
            out["Differential thresholds"] = dd.thresholds
        if dd.reference != "relative":
            out["Differential reference"] = dd.reference
    if job.latent_mask_mode != "a1111":
        out["Latent mask mode"] = job.latent_mask_mode
    if job.paste_back != "a1111":
        out["Paste back"] = job.paste_back
    if job.keep_unmasked_exact:
        out["Keep unmasked exact"] = True
    if job.seam_correction != "none":
        out["Seam correction"] = f"{job.seam_correction} {job.seam_radius}"
    if job.grid_aligned_crop:
        out["Grid aligned crop"] = True
    if job.mask_alpha != "a1111":
        out["Mask alpha"] = job.mask_alpha
    return out


_NUMBER = re.compile(r"^[+-]?\d+$")


def _number(key: str, text: str) -> int | float:
    """``"1"`` -> 1, ``"0.5"`` -> 0.5: the written form decides, so a re-run writes the same text."""
    try:
        return int(text) if _NUMBER.match(text.strip()) else float(text)
    except ValueError:
        raise ParamError(f"infotext: {key} value {text!r} is not a number") from None


def _flag(key: str, text: str) -> bool:
    if text not in ("True", "False"):
        raise ParamError(f"infotext: {key} value {text!r} must be True or False")
    return text == "True"


def soft_mask_fields(parsed: Mapping[str, object]) -> dict[str, Any]:
    """Img2Img keyword arguments from the soft-mask keys of a parsed infotext (the inverse of the above).

    The 7 A1111 soft inpainting keys give ``soft_inpainting`` (absent settings keep A1111's defaults);
    the Retouch-only keys give their fields. Bad values raise ParamError naming the key.
    """
    text = {k: str(v) for k, v in parsed.items()}
    out: dict[str, Any] = {}
    if _flag("Soft inpainting enabled", text.get("Soft inpainting enabled", "False")):
        out["soft_inpainting"] = SoftInpainting(**{
            h.name: _number(h.label, text[h.label]) for h in SOFT_INPAINTING_HOOKS if h.label in text
        })
    if "Differential diffusion" in text:
        out["differential_diffusion"] = DifferentialDiffusion(
            strength=_number("Differential diffusion", text["Differential diffusion"]),
            thresholds=text.get("Differential thresholds", "timestep"),
            reference=text.get("Differential reference", "relative"),
        )
    for key, name in (("Latent mask mode", "latent_mask_mode"), ("Paste back", "paste_back"), ("Mask alpha", "mask_alpha")):
        if key in text:
            out[name] = text[key]
    for key, name in (("Keep unmasked exact", "keep_unmasked_exact"), ("Grid aligned crop", "grid_aligned_crop")):
        if key in text:
            out[name] = _flag(key, text[key])
    if "Seam correction" in text:
        kind, _, radius = text["Seam correction"].partition(" ")
        out["seam_correction"] = kind
        if radius:
            out["seam_radius"] = int(_number("Seam correction", radius))
    return out
