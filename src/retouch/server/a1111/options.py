"""The subset of A1111's settings this server understands (spec Appendix C), and the server's defaults.

A1111 keeps these as process-wide options; ``override_settings`` changes them for one request and
``POST /sdapi/v1/options`` for all later ones. Here the options that change a generation map to fields
of :class:`retouch.params.Img2Img` (:data:`OPTION_FIELDS`), so a job carries its own values: a job
snapshots the server defaults when it is submitted, and neither an override nor a later
``POST /options`` can change a job already queued or running. Any other option name is refused with
the list of supported names. ``eta_ancestral`` / ``eta_ddim`` become the job's ``eta`` when the request
gives none and the sampler uses eta (ancestral/SDE samplers / DDIM, by the sampler's default eta).
``token_merging_ratio`` and ``token_merging_ratio_img2img`` become the job's one applied ratio by
A1111's img2img rule (translate.token_merging_ratio). ``return_grid`` decides whether the Loopback script returns its grid; the options of
:data:`UI_ONLY_DEFAULTS` (``send_seed`` and others that A1111's own test suite and clients read and
write) only change A1111's web UI: they are kept and returned, and change nothing here.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from PIL import ImageColor
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retouch.params import Img2Img, ParamError

__all__ = ["OPTION_FIELDS", "TOKEN_MERGING_OPTIONS", "Options", "OptionsStore", "validate_options", "SAMPLES_FORMATS"]

#: A1111 option name -> Img2Img field (spec Appendix C).
OPTION_FIELDS: dict[str, str] = {
    "img2img_fix_steps": "img2img_fix_steps",
    "img2img_color_correction": "img2img_color_correction",
    "overlay_inpaint": "overlay_inpaint",
    "inpainting_mask_weight": "inpainting_mask_weight",
    "initial_noise_multiplier": "initial_noise_multiplier",
    "img2img_extra_noise": "img2img_extra_noise",
    "img2img_background_color": "img2img_background_color",
    "return_mask": "return_mask",
    "return_mask_composite": "return_mask_composite",
    "eta_noise_seed_delta": "eta_noise_seed_delta",
    "CLIP_stop_at_last_layers": "clip_skip",
    "emphasis": "emphasis",
    "s_churn": "s_churn",
    "s_tmin": "s_tmin",
    "s_tmax": "s_tmax",
    "s_noise": "s_noise",
    "s_min_uncond": "s_min_uncond",
    "s_min_uncond_all": "s_min_uncond_all",
    "skip_early_cond": "skip_early_cond",
    "pad_cond_uncond": "pad_cond_uncond",
    "pad_cond_uncond_v0": "pad_cond_uncond_v0",
}

SAMPLES_FORMATS = ("png",)

#: A1111's token merging options; :func:`retouch.server.a1111.translate.token_merging_ratio` resolves them
#: into the job's one ``token_merging_ratio``.
TOKEN_MERGING_OPTIONS = ("token_merging_ratio", "token_merging_ratio_img2img")

_UI_ONLY = "UI-only option of A1111's web UI: accepted, stored and returned, with no effect on this server"


class Options(BaseModel):
    """The supported options; every field optional (absent = unchanged). Unknown names are kept in
    ``model_extra`` so that :func:`validate_options` can name them all in one error."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    sd_model_checkpoint: str | None = None
    sd_vae: str | None = None
    samples_format: str | None = None
    enable_pnginfo: bool | None = None
    live_previews_enable: bool | None = None
    show_progress_every_n_steps: int | None = None
    img2img_fix_steps: bool | None = None
    img2img_color_correction: bool | None = None
    overlay_inpaint: bool | None = None
    inpainting_mask_weight: float | None = None
    initial_noise_multiplier: float | None = None
    img2img_extra_noise: float | None = None
    img2img_background_color: str | None = None
    return_mask: bool | None = None
    return_mask_composite: bool | None = None
    eta_noise_seed_delta: int | None = None
    CLIP_stop_at_last_layers: int | None = None
    emphasis: str | None = None
    s_churn: float | None = None
    s_tmin: float | None = None
    s_tmax: float | None = None
    s_noise: float | None = None
    s_min_uncond: float | None = None
    s_min_uncond_all: bool | None = None
    skip_early_cond: float | None = None
    pad_cond_uncond: bool | None = None
    pad_cond_uncond_v0: bool | None = None
    token_merging_ratio: float | None = Field(None, description="ToMe ratio, 0 = off; an override wins over the img2img one")
    token_merging_ratio_img2img: float | None = Field(
        None, description="ToMe ratio for img2img, 0 = use token_merging_ratio"
    )
    eta_ancestral: float | None = None
    eta_ddim: float | None = None
    return_grid: bool | None = Field(
        None, description="A1111 'Show grid in gallery': the Loopback script returns its grid first (default true)"
    )
    send_seed: bool | None = Field(None, description=_UI_ONLY)
    send_size: bool | None = Field(None, description=_UI_ONLY)
    js_modal_lightbox: bool | None = Field(None, description=_UI_ONLY)
    js_modal_lightbox_initially_zoomed: bool | None = Field(None, description=_UI_ONLY)
    show_progressbar: bool | None = Field(None, description=_UI_ONLY)
    do_not_show_images: bool | None = Field(None, description=_UI_ONLY)


SUPPORTED = tuple(Options.model_fields)

#: A1111's defaults for the options that only change its web UI (shared_options.py, v1.10.1).
UI_ONLY_DEFAULTS: dict[str, Any] = {
    "send_seed": True, "send_size": True, "js_modal_lightbox": True, "js_modal_lightbox_initially_zoomed": True,
    "show_progressbar": True, "do_not_show_images": False,
}


def _field_default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(Img2Img) if f.name == name)


def default_options(model_title: str) -> dict[str, Any]:
    """A1111's defaults for the supported options; job options take Img2Img's defaults."""
    values: dict[str, Any] = {
        "sd_model_checkpoint": model_title,
        "sd_vae": "Automatic",
        "samples_format": "png",
        "enable_pnginfo": True,
        "live_previews_enable": True,
        "show_progress_every_n_steps": 10,
        "eta_ancestral": 1.0,
        "eta_ddim": 0.0,
        "return_grid": True,
        "token_merging_ratio": 0.0,
        "token_merging_ratio_img2img": 0.0,
        **UI_ONLY_DEFAULTS,
    }
    values.update({opt: _field_default(field) for opt, field in OPTION_FIELDS.items()})
    return values


def validate_options(raw: dict[str, Any], *, where: str, model_names: tuple[str, ...]) -> dict[str, Any]:
    """Check option names, types and ranges; return the given options with their parsed values.

    Raises ParamError naming ``where`` ("override_settings" or "options"), the bad names and the
    supported ones, or the field and its allowed values.
    """
    if not isinstance(raw, dict):
        raise ParamError(f"{where} must be an object mapping option names to values")
    unknown = sorted(k for k in raw if k not in SUPPORTED)
    if unknown:
        raise ParamError(
            f"unsupported option(s) in {where}: {', '.join(unknown)}; supported options: {', '.join(SUPPORTED)}"
        )
    try:
        parsed = Options.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise ParamError(f"{where}.{name}: {first['msg']}") from None
    values = {k: getattr(parsed, k) for k in raw if getattr(parsed, k) is not None}
    _check_values(values, where=where, model_names=model_names)
    return values


def _check_values(values: dict[str, Any], *, where: str, model_names: tuple[str, ...]) -> None:
    if "sd_model_checkpoint" in values and values["sd_model_checkpoint"] not in model_names:
        raise ParamError(
            f"{where}.sd_model_checkpoint: model {values['sd_model_checkpoint']!r} is not loaded; "
            f"this server runs only {model_names[0]!r}"
        )
    if values.get("sd_vae", "Automatic") not in ("Automatic", "None"):
        raise ParamError(f"{where}.sd_vae must be 'Automatic' or 'None'; got {values['sd_vae']!r}")
    fmt = values.get("samples_format", "png")
    if str(fmt).lower() not in SAMPLES_FORMATS:
        raise ParamError(f"{where}.samples_format must be one of {', '.join(SAMPLES_FORMATS)}; got {fmt!r}")
    color = values.get("img2img_background_color", "#ffffff")
    try:
        ImageColor.getrgb(color)
    except ValueError:
        raise ParamError(
            f"{where}.img2img_background_color must be a colour such as '#ffffff' or 'white'; got {color!r}"
        ) from None
    if values.get("show_progress_every_n_steps", 0) < -1:
        raise ParamError(f"{where}.show_progress_every_n_steps must be -1 or more")
    fields = {OPTION_FIELDS[k]: v for k, v in values.items() if k in OPTION_FIELDS}
    try:
        for key in ("eta_ancestral", "eta_ddim"):
            if key in values:
                Img2Img(eta=values[key])
        for key in TOKEN_MERGING_OPTIONS:
            if key in values:
                Img2Img(token_merging_ratio=values[key])
        Img2Img(**fields)
    except ParamError as e:
        raise ParamError(f"{where}: {e}") from None


class OptionsStore:
    """The server's current option values; thread-safe. Jobs read a :meth:`snapshot` at submission."""

    def __init__(
        self, model_title: str, model_names: tuple[str, ...], titles: dict[str, str] | None = None
    ) -> None:
        """``titles``: each name's model title, when several models are served (default: the first)."""
        self._values = default_options(model_title)
        self.model_names = model_names
        self._titles = dict(titles or {})
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def validated(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``raw`` checked, with ``sd_model_checkpoint`` spelled as its model's title."""
        values = validate_options(raw, where="options", model_names=self.model_names)
        if "sd_model_checkpoint" in values:
            name = values["sd_model_checkpoint"]
            values["sd_model_checkpoint"] = self._titles.get(name, self.model_names[0])
        return values

    def update(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate and apply ``raw`` (all or nothing); returns the new values."""
        values = self.validated(raw)
        with self._lock:
            self._values.update(values)
            return dict(self._values)
