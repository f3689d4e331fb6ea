"""Our job API's request body: A1111's img2img fields plus Retouch's named soft-mask fields.

A1111 can reach soft inpainting only through positional ``alwayson_scripts`` args and has no
differential diffusion or seam options (spec soft-masks.md G4). ``POST /api/v1/jobs`` also takes them by
name, beside A1111's fields, in one body with the (possibly soft: grey levels or alpha) mask; the
result's infotext echoes every option that is not at its A1111 default. Names, defaults and ranges
come from :mod:`retouch.params` (``SOFT_INPAINTING_HOOKS``, ``DIFFERENTIAL_HOOKS``, ``SEAM_HOOKS``), the
same tables a web form renders.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from retouch.params import DifferentialDiffusion, SoftInpainting
from retouch.server.a1111.schemas import Img2ImgRequest

__all__ = ["JobRequest", "SoftInpaintingBody", "DifferentialDiffusionBody"]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class SoftInpaintingBody(BaseModel):
    """A1111 soft inpainting by name (its defaults; ranges checked by ``retouch.params.SoftInpainting``).

    Numbers keep their JSON type (``2`` stays an int), so the infotext writes them as sent, as A1111 does.
    """

    model_config = _STRICT

    mask_blend_power: int | float = Field(1, description="schedule bias")
    mask_blend_scale: int | float = Field(0.5, description="preservation strength")
    inpaint_detail_preservation: int | float = Field(4, description="transition contrast boost")
    composite_mask_influence: int | float = Field(0, description="mask influence, 0-1")
    composite_difference_threshold: int | float = Field(0.5, description="difference threshold")
    composite_difference_contrast: int | float = Field(2, description="difference contrast")


class DifferentialDiffusionBody(BaseModel):
    """Differential diffusion: per-pixel strength from the blurred mask (1 = change)."""

    model_config = _STRICT

    strength: float = Field(1.0, description="1: binary per-step gate; 0: plain soft mask")
    thresholds: Literal["timestep", "step"] = "timestep"
    reference: Literal["relative", "absolute"] = "relative"


class JobRequest(Img2ImgRequest):
    """Body of ``POST /api/v1/jobs``: A1111's img2img request plus Retouch's soft-mask and feature-cache fields."""

    soft_inpainting: SoftInpaintingBody | None = None
    differential_diffusion: DifferentialDiffusionBody | None = None
    latent_mask_mode: Literal["a1111", "cover", "cover+1"] = "a1111"
    paste_back: Literal["a1111", "exact"] = "a1111"
    keep_unmasked_exact: bool = False
    seam_correction: Literal["none", "lowfreq"] = "none"
    seam_radius: int = Field(32, description="pixels, 4-256")
    grid_aligned_crop: bool = False
    mask_alpha: Literal["a1111", "auto", "alpha", "luminance"] = Field(
        "a1111", description="mask channel: 'a1111' alpha of RGBA only; 'auto' alpha of any mode that has one "
        "(LA, PA, P/RGB with transparency); 'alpha' always; 'luminance' never")
    feature_cache_interval: int = Field(0, description="feature cache: full UNet every N calls; 0 or 1 = off")
    feature_cache_depth: int = Field(1, description="feature cache: outer down/up blocks run on cached calls")

    def retouch_extras(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("latent_mask_mode", "paste_back", "keep_unmasked_exact", "seam_correction",
                         "seam_radius", "grid_aligned_crop", "mask_alpha", "feature_cache_interval", "feature_cache_depth")
        }
        if self.soft_inpainting is not None:
            out["soft_inpainting"] = SoftInpainting(**self.soft_inpainting.model_dump())
        if self.differential_diffusion is not None:
            out["differential_diffusion"] = DifferentialDiffusion(**self.differential_diffusion.model_dump())
        return out
