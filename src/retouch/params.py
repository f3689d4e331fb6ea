"""What the user asked for: frozen dataclasses and enums in A1111's words.

Field names and defaults follow A1111's ``StableDiffusionProcessingImg2Img`` class (spec §2.1); the
settings that A1111 keeps as global options and that change img2img (spec Appendix C) are per-job fields
here instead, so two jobs never influence each other. Nothing here imports torch: params are plain data,
validated at construction with errors that name the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from PIL import Image, ImageColor

__all__ = [
    "EMPHASIS_MODES",
    "ResizeMode",
    "MaskedContent",
    "InpaintArea",
    "Img2Img",
    "ParamError",
    "FieldHook",
    "SoftInpainting",
    "DifferentialDiffusion",
    "SOFT_INPAINTING_HOOKS",
    "DIFFERENTIAL_HOOKS",
    "SEAM_HOOKS",
]


class ParamError(ValueError):
    """A job parameter is invalid; the message names the field and the allowed values."""


#: A1111's emphasis modes (option ``emphasis``, spec a1111-prompts.md §2.2).
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")


class ResizeMode(IntEnum):
    """A1111 ``resize_mode`` (spec §2.3)."""

    JUST_RESIZE = 0
    CROP_AND_RESIZE = 1
    RESIZE_AND_FILL = 2
    LATENT_UPSCALE = 3


class MaskedContent(IntEnum):
    """A1111 ``inpainting_fill`` (spec §2.8)."""

    FILL = 0
    ORIGINAL = 1
    LATENT_NOISE = 2
    LATENT_NOTHING = 3


class InpaintArea(IntEnum):
    """A1111 ``inpaint_full_res``: False is "Whole picture", True is "Only masked" (spec §2.6-2.7)."""

    WHOLE_PICTURE = 0
    ONLY_MASKED = 1


def _enum(cls: type[IntEnum], name: str, value: Any) -> IntEnum:
    if isinstance(value, bool) or not isinstance(value, int):
        allowed = ", ".join(f"{m.value} ({m.name})" for m in cls)
        raise ParamError(f"{name} must be one of {allowed}; got {value!r}")
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(f"{m.value} ({m.name})" for m in cls)
        raise ParamError(f"{name} must be one of {allowed}; got {value!r}") from None


def _finite(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(f"{name} must be a number; got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ParamError(f"{name} must be a finite number; got {value!r}")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise ParamError(f"{name} must be in [{lo}, {hi}]; got {value!r}")
    return v


def _integer(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(f"{name} must be an integer; got {value!r}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ParamError(f"{name} must be in [{lo}, {hi}]; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FieldHook:
    """What a form needs to show one option: name, kind, default, range or choices, one-line help.

    ``kind`` is "float", "int", "bool" or "choice"; ``lo``/``hi`` bound numbers (None: open), ``step``
    is the UI slider step (A1111's where it has one). The same table validates the values (:func:`check`).
    """

    name: str
    kind: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    label: str = ""

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` validated against this hook (ParamError naming ``where + name`` and the range)."""
        name = f"{where}{self.name}"
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamError(f"{name} must be true or false; got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ParamError(f"{name} must be one of {', '.join(map(repr, self.choices))}; got {value!r}")
            return value
        if self.kind == "int":
            return _integer(name, value, None if self.lo is None else int(self.lo),
                            None if self.hi is None else int(self.hi))
        _finite(name, value, self.lo, self.hi)
        return value


#: A1111 soft inpainting's six sliders in API argument order (spec soft-masks.md §1.2). Ranges are wider
#: than the UI's where A1111's maths is defined (the API never validated them); the UI range is in ``help``.
SOFT_INPAINTING_HOOKS: tuple[FieldHook, ...] = (
    FieldHook("mask_blend_power", "float", 1, "Schedule bias: exponent of sigma in the per-step weight "
              "(UI 0-8; <1 preserves more near the end, >1 near the start).", 0.0, 64.0, 0.1,
              label="Soft inpainting schedule bias"),
    FieldHook("mask_blend_scale", "float", 0.5, "Preservation strength: how strongly partially masked "
              "content keeps the original (UI 0-8).", 0.0, 64.0, 0.05,
              label="Soft inpainting preservation strength"),
    FieldHook("inpaint_detail_preservation", "float", 4, "Transition contrast boost: power of the "
              "magnitude interpolation (UI 1-32; 0 is refused, A1111 silently fell back).", 1e-3, 256.0, 0.5,
              label="Soft inpainting transition contrast boost"),
    FieldHook("composite_mask_influence", "float", 0, "Mask influence: how much the mask biases the "
              "difference threshold (0-1).", 0.0, 1.0, 0.05, label="Soft inpainting mask influence"),
    FieldHook("composite_difference_threshold", "float", 0.5, "Difference threshold: latent distance at "
              "which the original's opacity is 50 % (UI 0-8).", 0.0, 64.0, 0.25,
              label="Soft inpainting difference threshold"),
    FieldHook("composite_difference_contrast", "float", 2, "Difference contrast: sharpness of the "
              "original/generated transition (UI 0-8).", 0.0, 64.0, 0.25,
              label="Soft inpainting difference contrast"),
)

#: Differential diffusion options (spec soft-masks.md §5.2).
DIFFERENTIAL_HOOKS: tuple[FieldHook, ...] = (
    FieldHook("strength", "float", 1.0, "Blend of the binary per-step gate (1) and the plain soft mask (0).",
              0.0, 1.0, 0.01),
    FieldHook("thresholds", "choice", "timestep", "'timestep': thresholds linear in model timesteps "
              "(ComfyUI); 'step': linear in sampler steps (the paper's code).", choices=("timestep", "step")),
    FieldHook("reference", "choice", "relative", "'relative': thresholds span the img2img run (ComfyUI); "
              "'absolute': they span the whole schedule, so denoising strength caps every pixel (InvokeAI).",
              choices=("relative", "absolute")),
)

#: Retouch-only seam, paste-back and mask-input options of Img2Img (spec soft-masks.md §5.4, G4); all off
#: (A1111's behaviour) by default.
SEAM_HOOKS: tuple[FieldHook, ...] = (
    FieldHook("latent_mask_mode", "choice", "a1111", "'a1111': bicubic latent mask (rounded unless soft); "
              "'cover': a latent cell is generated iff any of its pixels shows generated content; "
              "'cover+1': the same, grown by one cell.", choices=("a1111", "cover", "cover+1")),
    FieldHook("paste_back", "choice", "a1111", "'a1111': premultiplied overlay; 'exact': one float pass, "
              "original bytes where the overlay is opaque.", choices=("a1111", "exact")),
    FieldHook("keep_unmasked_exact", "bool", False, "Pixels where the blurred mask is 0 keep the original "
              "bytes, also under soft inpainting's composite."),
    FieldHook("seam_correction", "choice", "none", "'lowfreq': match the generated region's low-frequency "
              "colour to the original along the seam.", choices=("none", "lowfreq")),
    FieldHook("seam_radius", "int", 32, "Width in pixels of the ring that measures, and of the fade that "
              "applies, the seam correction.", 4, 256, 1),
    FieldHook("grid_aligned_crop", "bool", False, "Only masked: choose the crop so latent cells map to "
              "whole source-pixel blocks (no sub-pixel shift at paste-back)."),
    FieldHook("mask_alpha", "choice", "a1111", "Which channel of the mask image is the mask: 'a1111': the "
              "alpha of an RGBA mask, else luminance (LA, P with transparency: luminance); 'auto': the alpha "
              "of any mask that has one; 'alpha': always the alpha; 'luminance': never the alpha.",
              choices=("a1111", "auto", "alpha", "luminance")),
)


def _check_hooks(obj: Any, hooks: tuple[FieldHook, ...], where: str) -> None:
    for hook in hooks:
        hook.check(getattr(obj, hook.name), where)


@dataclass(frozen=True)
class SoftInpainting:
    """A1111's built-in "Soft inpainting" script (spec soft-masks.md §1); names and defaults are A1111's.

    Per step the x0 estimate is blended with the clean init latent by the weight
    ``nmask ** (sigma ** mask_blend_power * mask_blend_scale)`` with a magnitude-preserving interpolation
    of power ``inpaint_detail_preservation``; the final latent blend is skipped; the pixel composite uses
    the latent difference (``composite_*``). Ranges: :data:`SOFT_INPAINTING_HOOKS`.
    """

    mask_blend_power: float = 1
    mask_blend_scale: float = 0.5
    inpaint_detail_preservation: float = 4
    composite_mask_influence: float = 0
    composite_difference_threshold: float = 0.5
    composite_difference_contrast: float = 2

    def __post_init__(self) -> None:
        _check_hooks(self, SOFT_INPAINTING_HOOKS, "soft_inpainting.")

    @classmethod
    def from_args(cls, args: Sequence[Any]) -> SoftInpainting | None:
        """From A1111's positional script args ``[enabled, power, scale, detail, influence, threshold,
        contrast]``: a shorter list keeps the defaults for the rest; ``enabled`` false gives None."""
        if len(args) > 1 + len(SOFT_INPAINTING_HOOKS):
            raise ParamError(f"soft inpainting takes at most 7 args (enabled + 6 settings); got {len(args)}")
        if not args or not isinstance(args[0], bool):
            raise ParamError(f"soft inpainting args[0] (enabled) must be true or false; got {list(args)[:1]!r}")
        if not args[0]:
            return None
        return cls(**{h.name: v for h, v in zip(SOFT_INPAINTING_HOOKS, args[1:], strict=False)})

    def infotext(self) -> dict[str, Any]:
        """A1111's 7 infotext keys in A1111's order (``enabled`` always True), values as given."""
        out: dict[str, Any] = {"Soft inpainting enabled": True}
        out.update({h.label: getattr(self, h.name) for h in SOFT_INPAINTING_HOOKS})
        return out


@dataclass(frozen=True)
class DifferentialDiffusion:
    """Per-pixel strength from the blurred, unrounded mask (1 = change; spec soft-masks.md §2, §5.1).

    A latent pixel with mask value ``d`` follows the original until the per-call threshold falls to
    ``d``, then denoises freely; ``d == 0`` never does. Ranges and meaning: :data:`DIFFERENTIAL_HOOKS`.
    """

    strength: float = 1.0
    thresholds: str = "timestep"
    reference: str = "relative"

    def __post_init__(self) -> None:
        _check_hooks(self, DIFFERENTIAL_HOOKS, "differential_diffusion.")


@dataclass(frozen=True)
class Img2Img:
    """One img2img or inpainting job, A1111's ``StableDiffusionProcessingImg2Img`` as data.

    Defaults are A1111's class defaults (spec §2.1): for instance ``inpaint_full_res=True`` ("Only
    masked") and ``inpainting_fill=MaskedContent.FILL``, which differ from the web UI's defaults
    (``retouch.params.UI_DEFAULTS`` lists those). ``sampler_name`` defaults to ``"Euler"``, the value
    A1111's API resolves when no sampler is given.

    ``mask_blur`` has A1111's property semantics: an integer given here sets both ``mask_blur_x`` and
    ``mask_blur_y``; after construction it reads back as the common value, or None when they differ.
    ``inpaint_full_res`` accepts a bool or an :class:`InpaintArea`.
    """

    # base fields (txt2img and img2img)
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_w: int = -1
    seed_resize_from_h: int = -1
    sampler_name: str = "Euler"
    scheduler: str = "Automatic"
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    eta: float | None = None
    s_min_uncond: float = 0.0
    s_churn: float = 0.0
    s_tmax: float = 0.0
    s_tmin: float = 0.0
    s_noise: float = 1.0
    # img2img fields
    init_images: Sequence[Image.Image] = ()
    resize_mode: ResizeMode | int = ResizeMode.JUST_RESIZE
    denoising_strength: float = 0.75
    image_cfg_scale: float | None = None
    mask: Image.Image | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: MaskedContent | int = MaskedContent.FILL
    inpaint_full_res: bool | InpaintArea = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float = 1.0
    latent_mask: Image.Image | None = None
    force_task_id: str | None = None
    #: A1111's ``p.color_corrections`` preset by a script (Loopback): with colour correction on, every
    #: output is matched to this image instead of its own processed init image.
    color_correction_image: Image.Image | None = None
    # A1111 global options that change img2img, as per-job settings (spec Appendix C)
    img2img_fix_steps: bool = False
    img2img_color_correction: bool = False
    overlay_inpaint: bool = True
    inpainting_mask_weight: float = 1.0
    img2img_extra_noise: float = 0.0
    img2img_background_color: str = "#ffffff"
    return_mask: bool = False
    return_mask_composite: bool = False
    eta_noise_seed_delta: int = 0
    clip_skip: int = 1
    emphasis: str = "Original"
    # A1111's speed options (retouch.sampling.guidance), off by default as in A1111
    s_min_uncond_all: bool = False
    skip_early_cond: float = 0.0
    pad_cond_uncond: bool = False
    pad_cond_uncond_v0: bool = False
    #: Retouch-only DeepCache-style feature cache (retouch.models.feature_cache): with an interval N >= 2
    #: the full UNet runs on every N-th call and the calls between reuse its deep features, running
    #: only ``feature_cache_depth`` outer down/up blocks; 0 or 1 = off (the exact path).
    feature_cache_interval: int = 0
    feature_cache_depth: int = 1
    #: A1111's token merging (ToMe, retouch.token_merge): the ratio applied to this job, A1111's
    #: ``p.get_token_merging_ratio()`` (the server resolves the ``token_merging_ratio`` and
    #: ``token_merging_ratio_img2img`` options into it); 0 = off (the exact path), at most just under 1.
    token_merging_ratio: float = 0.0
    # soft masks (spec soft-masks.md §5.2): A1111's soft inpainting, and Retouch-only options (off = A1111)
    soft_inpainting: SoftInpainting | None = None
    differential_diffusion: DifferentialDiffusion | None = None
    latent_mask_mode: str = "a1111"
    paste_back: str = "a1111"
    keep_unmasked_exact: bool = False
    seam_correction: str = "none"
    seam_radius: int = 32
    grid_aligned_crop: bool = False
    #: which channel of ``mask`` is the mask (imaging.mask.to_single_channel_mask; spec soft-masks.md G4)
    mask_alpha: str = "a1111"
    comments: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "init_images", tuple(self.init_images))
        for i, im in enumerate(self.init_images):
            if not isinstance(im, Image.Image):
                raise ParamError(f"init_images[{i}] must be a PIL image; got {type(im).__name__}")
        for name in ("mask", "latent_mask", "color_correction_image"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, Image.Image):
                raise ParamError(f"{name} must be a PIL image or None; got {type(v).__name__}")
        if not isinstance(self.prompt, str) or not isinstance(self.negative_prompt, str):
            raise ParamError("prompt and negative_prompt must be strings")
        set_(self, "resize_mode", _enum(ResizeMode, "resize_mode", self.resize_mode))
        set_(self, "inpainting_fill", _enum(MaskedContent, "inpainting_fill", self.inpainting_fill))
        area = self.inpaint_full_res
        if isinstance(area, InpaintArea):
            area = area is InpaintArea.ONLY_MASKED
        elif not isinstance(area, bool):
            raise ParamError(f"inpaint_full_res must be a bool or InpaintArea; got {area!r}")
        set_(self, "inpaint_full_res", area)
        # A1111's mask_blur setter: an int sets both axes; reading gives x if x == y else None.
        if self.mask_blur is not None:
            blur = _integer("mask_blur", self.mask_blur, 0, 256)
            set_(self, "mask_blur_x", blur)
            set_(self, "mask_blur_y", blur)
        _integer("mask_blur_x", self.mask_blur_x, 0, 256)
        _integer("mask_blur_y", self.mask_blur_y, 0, 256)
        set_(self, "mask_blur", self.mask_blur_x if self.mask_blur_x == self.mask_blur_y else None)
        inv = self.inpainting_mask_invert
        if inv not in (0, 1, True, False):
            raise ParamError(f"inpainting_mask_invert must be 0 or 1; got {inv!r}")
        set_(self, "inpainting_mask_invert", int(inv))
        self._validate_numbers()
        self._validate_soft()

    def _validate_soft(self) -> None:
        """Soft-mask options; soft inpainting or differential diffusion with a mask turns rounding off.

        A1111's soft inpainting sets ``p.mask_round = False`` before ``init()`` (spec soft-masks.md §1.3);
        here the job's ``mask_round`` reads False in that case, so every consumer sees the same value.
        """
        for name, kind in (("soft_inpainting", SoftInpainting), ("differential_diffusion", DifferentialDiffusion)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise ParamError(f"{name} must be a {kind.__name__} or None; got {type(value).__name__}")
        if self.soft_inpainting is not None and self.differential_diffusion is not None:
            raise ParamError("soft_inpainting and differential_diffusion cannot be combined; choose one")
        _check_hooks(self, SEAM_HOOKS, "")
        if self.latent_mask_mode != "a1111" and (self.soft_inpainting or self.differential_diffusion):
            raise ParamError(
                f"latent_mask_mode {self.latent_mask_mode!r} makes the latent mask binary, which would undo "
                "soft_inpainting / differential_diffusion; use latent_mask_mode 'a1111' with them"
            )
        if (self.soft_inpainting or self.differential_diffusion) and self.mask is not None:
            object.__setattr__(self, "mask_round", False)

    def _validate_numbers(self) -> None:
        _finite("denoising_strength", self.denoising_strength, 0.0, 1.0)
        _finite("cfg_scale", self.cfg_scale, 0.0, 100.0)
        if self.image_cfg_scale is not None:
            _finite("image_cfg_scale", self.image_cfg_scale, 0.0, 100.0)
        _finite("subseed_strength", self.subseed_strength, 0.0, 1.0)
        _finite("initial_noise_multiplier", self.initial_noise_multiplier, 0.0, 1.5)
        _finite("inpainting_mask_weight", self.inpainting_mask_weight, 0.0, 1.0)
        _finite("img2img_extra_noise", self.img2img_extra_noise, 0.0, 1.0)
        if self.eta is not None:
            _finite("eta", self.eta, 0.0, 10.0)
        for name in ("s_min_uncond", "s_churn", "s_tmax", "s_tmin"):
            _finite(name, getattr(self, name), 0.0, None)
        _finite("s_noise", self.s_noise, 0.0, 10.0)
        _finite("skip_early_cond", self.skip_early_cond, 0.0, 1.0)
        _integer("feature_cache_interval", self.feature_cache_interval, 0, 1000)
        _integer("feature_cache_depth", self.feature_cache_depth, 1, 8)
        ratio = _finite("token_merging_ratio", self.token_merging_ratio)
        if not 0.0 <= ratio < 1.0:
            raise ParamError(f"token_merging_ratio must be in [0, 1) (0 = off); got {self.token_merging_ratio!r}")
        _integer("steps", self.steps, 1, 10_000)
        _integer("batch_size", self.batch_size, 1, 1024)
        _integer("n_iter", self.n_iter, 1, 10_000)
        _integer("width", self.width, 8, 16384)
        _integer("height", self.height, 8, 16384)
        _integer("inpaint_full_res_padding", self.inpaint_full_res_padding, 0, 16384)
        _integer("clip_skip", self.clip_skip, 1, 12)
        _integer("eta_noise_seed_delta", self.eta_noise_seed_delta, 0, None)
        for name in ("seed", "subseed"):
            _integer(name, getattr(self, name), -1, 2**32 - 1)
        for name in ("seed_resize_from_w", "seed_resize_from_h"):
            _integer(name, getattr(self, name), -1, 16384)
        try:
            ImageColor.getrgb(self.img2img_background_color)
        except (ValueError, AttributeError):
            raise ParamError(
                "img2img_background_color must be a colour such as '#ffffff' or 'white'; "
                f"got {self.img2img_background_color!r}"
            ) from None
        if self.emphasis not in EMPHASIS_MODES:
            raise ParamError(f"emphasis must be one of {', '.join(map(repr, EMPHASIS_MODES))}; got {self.emphasis!r}")
        if not isinstance(self.sampler_name, str) or not isinstance(self.scheduler, str):
            raise ParamError("sampler_name and scheduler must be strings")

    @property
    def inpaint_area(self) -> InpaintArea:
        return InpaintArea.ONLY_MASKED if self.inpaint_full_res else InpaintArea.WHOLE_PICTURE

    def replace(self, **changes: Any) -> Img2Img:
        """A copy with ``changes`` applied (``mask_blur`` is re-derived unless given)."""
        changes.setdefault("mask_blur", None)
        return dataclasses.replace(self, **changes)


#: A1111's web UI defaults where they differ from the class/API defaults (spec §8.9).
UI_DEFAULTS: dict[str, Any] = {
    "inpainting_fill": MaskedContent.ORIGINAL,
    "inpaint_full_res": False,
    "inpaint_full_res_padding": 32,
    "sampler_name": "DPM++ 2M",
    "steps": 20,
    "image_cfg_scale": 1.5,
    "seed_resize_from_w": 0,
    "seed_resize_from_h": 0,
}
