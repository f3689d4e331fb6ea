"""A1111 img2img request -> :class:`retouch.params.Img2Img`, checked before anything is queued.

Order (spec §5.4, own formulation): refuse what this server does not do (always-on scripts, face
restoration, tiling, refiner, saving) -> merge ``infotext`` (§5.5) -> validate ``override_settings``
against the supported options -> check the server's limits -> decode images -> build the job with
precedence request field > override_settings > server option > Img2Img default -> apply prompt
styles -> resolve sampler, scheduler, batch and schedule with :func:`retouch.plan.make_plan` -> parse and
check the selectable script (``script_name``/``script_args``: SD upscale, Loopback, see
:mod:`retouch.recipes`). Every failure is a ParamError that names the field, so the client gets a 422 with a readable message and the worker never sees the job.

Differences from A1111, on purpose: a missing or empty ``init_images`` is a 422 with a message (A1111
answers 404); broken images are 422s naming the image (A1111: 500 "Invalid encoded image");
``latent_mask`` is decoded and used (A1111 passes it on undecoded); request values of ``s_churn`` etc.
are honoured (A1111 lets the global options win, spec §8.20); an ``initial_noise_multiplier`` override is
honoured (A1111 ignores it, §8.10); "Seed resize from" in ``infotext`` maps w->w, h->h (A1111 swaps
them, §8.17); http(s) URLs are not fetched.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from retouch.formats.images import ImageDecodeError, decode_base64_image
from retouch.info import soft_mask_fields
from retouch.infotext import parse_infotext
from retouch.params import SOFT_INPAINTING_HOOKS, Img2Img, ParamError, SoftInpainting
from retouch.plan import make_plan
from retouch.recipes import ScriptCall, SDUpscale, check_script, parse_script, script_job_count, upscaled_size
from retouch.sampling.registry import get_sampler, split_sampler_name
from retouch.server.a1111.options import OPTION_FIELDS, validate_options
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.config import ServerConfig
from retouch.styles import PromptStyle, apply_styles

__all__ = ["Submission", "build_submission", "merge_infotext", "token_merging_ratio"]

#: Request fields copied to Img2Img unchanged when set.
_DIRECT = (
    "prompt", "negative_prompt", "seed", "subseed", "subseed_strength", "seed_resize_from_w",
    "seed_resize_from_h", "batch_size", "n_iter", "steps", "cfg_scale", "width", "height", "eta",
    "denoising_strength", "resize_mode", "image_cfg_scale", "mask_blur_x", "mask_blur_y", "mask_blur",
    "mask_round", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
    "inpainting_mask_invert", "force_task_id",
)
#: Request fields that default to null and then take the option's value (spec §5.2).
_FROM_OPTIONS = ("s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise", "initial_noise_multiplier")

#: infotext key -> (request field, type), taken when the request did not set the field (spec §5.5).
_INFOTEXT_FIELDS: dict[str, tuple[str, type]] = {
    "Steps": ("steps", int),
    "Sampler": ("sampler_name", str),
    "Schedule type": ("scheduler", str),
    "Seed": ("seed", int),
    "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", int),
    "Seed resize from-2": ("seed_resize_from_h", int),
}
#: Retouch-only infotext key -> (request field, type), for request schemas that have the field (our job API).
_RETOUCH_INFOTEXT_FIELDS: dict[str, tuple[str, type]] = {
    "Feature cache interval": ("feature_cache_interval", int),
    "Feature cache depth": ("feature_cache_depth", int),
}
#: infotext key -> (option, type), added to override_settings unless already there (spec §5.5).
_INFOTEXT_OPTIONS: dict[str, tuple[str, type]] = {
    "Clip skip": ("CLIP_stop_at_last_layers", int),
    "Emphasis": ("emphasis", str),
    "ENSD": ("eta_noise_seed_delta", int),
    "Conditional mask weight": ("inpainting_mask_weight", float),
    "Noise multiplier": ("initial_noise_multiplier", float),
    "Extra noise": ("img2img_extra_noise", float),
    "NGMS": ("s_min_uncond", float),
    "NGMS all steps": ("s_min_uncond_all", bool),
    "Skip Early CFG": ("skip_early_cond", float),
    "Pad conds": ("pad_cond_uncond", bool),
    "Pad conds v0": ("pad_cond_uncond_v0", bool),
    "Token merging ratio": ("token_merging_ratio", float),
}


@dataclass(frozen=True)
class Submission:
    """A checked request, ready for the worker: the job plus what the response needs."""

    job: Img2Img
    request: Img2ImgRequest
    samples_format: str
    enable_pnginfo: bool
    preview_every: int
    script: ScriptCall | None = None
    return_grid: bool = True

    @property
    def job_count(self) -> int:
        """Engine calls the job makes: ``n_iter``, or the script's count (A1111 ``state.job_count``)."""
        return self.job.n_iter if self.script is None else script_job_count(self.job, self.script)


def _refuse_unsupported(req: Img2ImgRequest) -> None:
    for name in ("restore_faces", "tiling"):
        if getattr(req, name):
            raise ParamError(f"{name}=true is not supported by this server; send false or null")
    if req.refiner_checkpoint not in (None, "", "None"):
        raise ParamError("refiner_checkpoint is not supported by this server; send null")
    if req.firstpass_image is not None:
        raise ParamError("firstpass_image is a txt2img field; img2img does not take it")
    if req.save_images:
        raise ParamError("save_images=true is not supported: this server never writes files; send false")


#: A1111's title of its built-in script, matched case-insensitively (soft-masks.md §1.10).
SOFT_INPAINTING_TITLE = "soft inpainting"


def soft_inpainting_of(req: Img2ImgRequest) -> SoftInpainting | None:
    """``alwayson_scripts`` -> the job's soft inpainting (soft-masks.md §1.10, §5.3).

    The key matches "Soft Inpainting" case-insensitively; ``args`` is A1111's positional list
    ``[enabled, power, scale, detail, influence, threshold, contrast]``, shorter lists keep the defaults,
    no ``args`` or ``enabled`` false means off (A1111's UI default). Any other name is A1111's 422
    ``Script '<name>' not found``.
    """
    found: SoftInpainting | None = None
    for name, value in req.alwayson_scripts.items():
        if name.lower() != SOFT_INPAINTING_TITLE:
            raise ParamError(f"Script '{name}' not found")
        if not isinstance(value, dict) or not isinstance(value.get("args", []), list):
            raise ParamError(f"alwayson_scripts[{name!r}] must be an object with an 'args' list; got {value!r}")
        args = value.get("args", [])
        found = SoftInpainting.from_args(args) if args else None
    return found


def _soft_infotext(req: Img2ImgRequest, parsed: dict[str, object]) -> dict[str, Any]:
    """The 7 soft inpainting keys of an infotext as ``alwayson_scripts`` args (A1111 ``apply_infotext``),
    unless the request names the script itself."""
    if any(k.lower() == SOFT_INPAINTING_TITLE for k in req.alwayson_scripts):
        return dict(req.alwayson_scripts)
    soft = soft_mask_fields(parsed).get("soft_inpainting")
    if soft is None:
        return dict(req.alwayson_scripts)
    args = [True, *(getattr(soft, h.name) for h in SOFT_INPAINTING_HOOKS)]
    return {**req.alwayson_scripts, "Soft inpainting": {"args": args}}


def _cast(key: str, value: Any, kind: type) -> Any:
    if kind is bool:  # A1111 writes flags as True / False
        if str(value) not in ("True", "False"):
            raise ParamError(f"infotext: {key} value {value!r} must be True or False")
        return str(value) == "True"
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ParamError(f"infotext: {key} value {value!r} is not a valid {kind.__name__}") from None


def merge_infotext(req: Img2ImgRequest) -> Img2ImgRequest:
    """Fill fields the request did not set from its ``infotext`` (spec §5.5); settings keys go into
    ``override_settings`` unless the request already overrides them."""
    if not req.infotext:
        return req
    parsed = parse_infotext(req.infotext)
    updates: dict[str, Any] = {}
    for key, (name, kind) in _INFOTEXT_FIELDS.items():
        if key in parsed and name not in req.model_fields_set:
            updates[name] = _cast(key, parsed[key], kind)
    for key, (name, kind) in _RETOUCH_INFOTEXT_FIELDS.items():
        if key in parsed and name in type(req).model_fields and name not in req.model_fields_set:
            updates[name] = _cast(key, parsed[key], kind)
    overrides = dict(req.override_settings or {})
    for key, (option, kind) in _INFOTEXT_OPTIONS.items():
        if key in parsed and option not in overrides:
            overrides[option] = _cast(key, parsed[key], kind)
    updates["override_settings"] = overrides
    updates["alwayson_scripts"] = _soft_infotext(req, parsed)
    return req.model_copy(update=updates)


def _check_limits(req: Img2ImgRequest, config: ServerConfig) -> None:
    if not req.init_images:
        raise ParamError("init_images is required: send a list with at least one base64 image")
    checks = (
        ("steps", req.steps, config.max_steps),
        ("batch_size", req.batch_size, config.max_batch_size),
        ("n_iter", req.n_iter, config.max_n_iter),
        ("init_images", len(req.init_images), config.max_batch_size),
    )
    for name, value, limit in checks:
        if value > limit:
            what = "count" if name == "init_images" else "value"
            raise ParamError(f"{name} {what} {value} is over this server's limit of {limit}")
    sizes = (("width x height", req.width, req.height),
             ("seed_resize_from_w x seed_resize_from_h", req.seed_resize_from_w, req.seed_resize_from_h))
    for name, w, h in sizes:
        if w > 0 and h > 0 and w * h > config.max_output_pixels:
            raise ParamError(
                f"{name} = {w}x{h} is over this server's limit of {config.max_output_pixels} pixels"
            )


def _decode(name: str, data: str, max_pixels: int) -> Image.Image:
    if data.startswith(("http://", "https://")):
        raise ParamError(f"{name}: image URLs are not fetched by this server; send base64 image data")
    try:
        return decode_base64_image(data, max_pixels=max_pixels)
    except ImageDecodeError as e:
        raise ParamError(f"{name}: {e}") from None


def token_merging_ratio(options: Mapping[str, Any], overridden: Collection[str]) -> float:
    """A1111's ``StableDiffusionProcessingImg2Img.get_token_merging_ratio`` for an API request.

    ``p.token_merging_ratio or ("token_merging_ratio" in override_settings and opts.token_merging_ratio)
    or opts.token_merging_ratio_img2img or opts.token_merging_ratio``, with ``p.token_merging_ratio`` 0
    (a class attribute in A1111, not a request field): a general ratio given in ``override_settings``
    (or recalled from an infotext) wins, else the img2img option if non-zero, else the general option."""
    general = float(options.get("token_merging_ratio", 0.0))
    if "token_merging_ratio" in overridden and general:
        return general
    return float(options.get("token_merging_ratio_img2img", 0.0)) or general


def _job_fields(req: Img2ImgRequest, options: dict[str, Any], overridden: Collection[str] = ()) -> dict[str, Any]:
    fields: dict[str, Any] = {field: options[opt] for opt, field in OPTION_FIELDS.items() if opt in options}
    fields["token_merging_ratio"] = token_merging_ratio(options, overridden)
    for name in _FROM_OPTIONS:
        value = getattr(req, name)
        if value is not None:
            fields[name] = value
    for name in _DIRECT:
        fields[name] = getattr(req, name)
    fields["sampler_name"] = req.sampler_name or req.sampler_index or "Euler"
    fields["scheduler"] = req.scheduler or "Automatic"
    if fields["eta"] is None:
        fields["eta"] = _option_eta(str(fields["sampler_name"]), options)
    return fields


def retouch_fields(req: Img2ImgRequest) -> dict[str, Any]:
    """Soft-mask Img2Img fields: A1111's soft inpainting script plus the request's own extensions
    (``req.retouch_extras()``, empty for A1111's schema); giving soft inpainting twice is refused."""
    extras = req.retouch_extras()
    soft = soft_inpainting_of(req)
    if soft is not None:
        if extras.get("soft_inpainting") is not None:
            raise ParamError("soft inpainting is given twice: use alwayson_scripts or soft_inpainting, not both")
        extras["soft_inpainting"] = soft
    return extras


def _option_eta(sampler_name: str, options: dict[str, Any]) -> float | None:
    """``eta_ancestral`` or ``eta_ddim`` for a sampler that uses eta, when it differs from the
    sampler's default (spec Appendix C); None otherwise (the engine then uses the default)."""
    spec = get_sampler(split_sampler_name(sampler_name)[0])
    if not spec.uses_eta:
        return None
    value = options["eta_ddim" if spec.default_eta == 0.0 else "eta_ancestral"]
    return None if value == spec.default_eta else float(value)


def _script(req: Img2ImgRequest, job: Img2Img, config: ServerConfig) -> ScriptCall | None:
    """The request's script, checked against the job and the server's limits (None without one)."""
    if not req.script_name:
        return None
    call = parse_script(req.script_name, req.script_args)
    check_script(job, call)
    if isinstance(call.args, SDUpscale):
        w, h = upscaled_size(job.init_images[0].size, call.args)
        if w * h > config.max_image_pixels:
            raise ParamError(
                f"SD upscale to {w}x{h} is over this server's limit of {config.max_image_pixels} pixels"
            )
    return call


def build_submission(
    req: Img2ImgRequest, server_options: dict[str, Any], config: ServerConfig, model_names: tuple[str, ...],
    styles: Mapping[str, PromptStyle] | None = None,
) -> Submission:
    """Check and translate one request (see the module docstring); raises ParamError.

    ``styles``: the server's saved prompt styles; the request's ``styles`` are applied to the prompt and
    negative prompt (A1111 ``setup_prompts``), an unknown name is refused with the known ones."""
    _refuse_unsupported(req)
    req = merge_infotext(req)
    overrides = validate_options(req.override_settings or {}, where="override_settings", model_names=model_names)
    options = {**server_options, **overrides}
    _check_limits(req, config)
    assert req.init_images is not None
    fields = _job_fields(req, options, overrides)
    fields["init_images"] = [
        _decode(f"init_images[{i}]", data, config.max_image_pixels) for i, data in enumerate(req.init_images)
    ]
    if req.mask:
        fields["mask"] = _decode("mask", req.mask, config.max_image_pixels)
    if req.latent_mask:
        fields["latent_mask"] = _decode("latent_mask", req.latent_mask, config.max_image_pixels)
    if req.styles:
        fields["prompt"], fields["negative_prompt"] = apply_styles(
            fields["prompt"], fields["negative_prompt"], req.styles, styles or {}
        )
    fields.update(retouch_fields(req))
    job = Img2Img(**fields)
    make_plan(job)  # unknown sampler/scheduler, too many init images, empty schedule: refused here
    script = _script(req, job, config)
    every = int(options["show_progress_every_n_steps"]) if options["live_previews_enable"] else 0
    return Submission(
        job=job, request=req, samples_format=str(options["samples_format"]).lower(),
        enable_pnginfo=bool(options["enable_pnginfo"]), preview_every=every, script=script,
        return_grid=bool(options["return_grid"]),
    )
