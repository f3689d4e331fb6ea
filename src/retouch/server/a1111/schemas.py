"""A1111's HTTP schemas for img2img, progress, options and png-info, written by hand (spec §5.2-§5.6).

Field names, types and defaults are A1111's API values (spec §5.2), which differ from the web UI's
(spec §8.9): ``sampler_index`` "Euler", ``steps`` 50, ``inpaint_full_res`` true, padding 0,
``inpainting_fill`` 0. Two deliberate differences: unknown fields are rejected (A1111 ignores them, so a
misspelt field silently became its default), and NaN or infinite numbers are rejected.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Img2ImgRequest",
    "Img2ImgResponse",
    "ProgressState",
    "ProgressResponse",
    "PngInfoRequest",
    "PngInfoResponse",
    "SamplerItem",
    "SchedulerItem",
    "SDModelItem",
    "ScriptsList",
    "ScriptArg",
    "ScriptInfo",
    "UpscalerItem",
    "PromptStyleItem",
    "ErrorResponse",
]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

#: An 8x8 red PNG, for the schema's example request (served at /docs and used by API fuzzers).
EXAMPLE_IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mPcoqHBgA0wMeAAg1MCANCsARTeYvrcAAAAAElFTkSuQmCC"
_EXAMPLE: dict[str, Any] = {
    "prompt": "a red knitted hat", "init_images": [f"data:image/png;base64,{EXAMPLE_IMAGE}"],
    "width": 64, "height": 64, "steps": 3, "seed": 1234, "denoising_strength": 0.75, "sampler_name": "Euler a",
}


class Img2ImgRequest(BaseModel):
    """Body of ``POST /sdapi/v1/img2img`` and ``POST /api/v1/jobs`` (spec §5.2)."""

    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [_EXAMPLE]})

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = Field(None, description="prompt style names from the server's styles file")
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = Field(None, description="sampler display name; null uses sampler_index")
    sampler_index: str | None = Field("Euler", description="legacy alias of sampler_name")
    scheduler: str | None = Field(None, description='scheduler label or name; null means "Automatic"')
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float = 0.75
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = Field(None, description="option name -> value, this job only")
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    init_images: list[str] | None = Field(
        None, description="required: base64 images, optionally data:image/...;base64, prefixed"
    )
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: str | None = Field(None, description="base64 mask image; white = regenerate")
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = Field(None, description="base64 image used for the latent mask blend")
    force_task_id: str | None = None
    include_init_images: bool = False
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(
        default_factory=dict, description='only "Soft inpainting": {"args": [enabled, power, scale, detail, '
        'influence, threshold, contrast]}; other scripts are refused'
    )
    infotext: str | None = None

    def retouch_extras(self) -> dict[str, Any]:
        """Img2Img fields from Retouch's own request extensions; none in A1111's schema."""
        return {}


class Img2ImgResponse(BaseModel):
    """Spec §5.3: base64 images (no data: prefix), the request as received, ``info`` as a JSON string."""

    images: list[str] | None = None
    parameters: dict[str, Any]
    info: str


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    """``GET /sdapi/v1/progress`` (spec §5.6)."""

    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None


class PngInfoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(..., description="base64 image, optionally data:image/...;base64, prefixed")


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float = -1.0
    need_inner_model: bool = False


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class ScriptsList(BaseModel):
    """``GET /sdapi/v1/scripts``: selectable script names per tab (A1111 ``ScriptsList``)."""

    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class ScriptArg(BaseModel):
    """One script argument as A1111's UI control describes it (``ScriptArg``)."""

    label: str | None = None
    value: Any = None
    minimum: Any = None
    maximum: Any = None
    step: Any = None
    choices: list[str] | None = None


class ScriptInfo(BaseModel):
    """``GET /sdapi/v1/script-info`` entry (A1111 ``ScriptInfo``); ``args`` in ``script_args`` order."""

    name: str | None = None
    is_alwayson: bool | None = None
    is_img2img: bool | None = None
    args: list[ScriptArg]


class UpscalerItem(BaseModel):
    """``GET /sdapi/v1/upscalers`` entry (A1111 ``UpscalerItem``)."""

    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class PromptStyleItem(BaseModel):
    """``GET /sdapi/v1/prompt-styles`` entry (A1111 ``PromptStyleItem``)."""

    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


class ErrorResponse(BaseModel):
    """A1111's error body (spec §5.1): exception class, detail, request body and the error text."""

    error: str
    detail: Any
    body: Any = ""
    errors: Any = ""
