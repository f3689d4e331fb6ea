"""The generating commands' options, declared once, and their translation into Img2Img fields.

Options are listed as ``inspect.Parameter`` objects carrying Typer annotations, grouped (generation,
mask, device), and :func:`with_options` gives a command function the signature of the groups it
takes: Typer reads that signature, so ``img2img``, ``inpaint`` and ``batch`` share one declaration of
each option instead of three copies.

Defaults are A1111's web UI defaults (``retouch.params.UI_DEFAULTS``: DPM++ 2M, 20 steps, masked
content "original", whole picture, padding 32), not its API defaults. One deliberate difference: with
neither ``--size`` nor ``--scale-by`` the processing size is the input's own size floored to a multiple
of 8 (A1111's "Resize by 1"), not a fixed 512x512, which would squash most photos.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from retouch.cli.errors import CliError
from retouch.params import UI_DEFAULTS, MaskedContent, ResizeMode

__all__ = [
    "engine_options",
    "ResizeChoice",
    "MaskedChoice",
    "AreaChoice",
    "PrecisionChoice",
    "BackendChoice",
    "GENERATION",
    "MASK",
    "DEVICE",
    "with_options",
    "job_fields",
    "processing_size",
    "UI_JOB_DEFAULTS",
]


class ResizeChoice(str, Enum):
    just = "just"
    crop = "crop"
    fill = "fill"
    latent = "latent"


class MaskedChoice(str, Enum):
    fill = "fill"
    original = "original"
    latent_noise = "latent-noise"
    latent_nothing = "latent-nothing"


class AreaChoice(str, Enum):
    whole = "whole"
    only_masked = "only-masked"


class BackendChoice(str, Enum):
    torch = "torch"
    openvino = "openvino"


class PrecisionChoice(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


_RESIZE = {
    ResizeChoice.just: ResizeMode.JUST_RESIZE,
    ResizeChoice.crop: ResizeMode.CROP_AND_RESIZE,
    ResizeChoice.fill: ResizeMode.RESIZE_AND_FILL,
    ResizeChoice.latent: ResizeMode.LATENT_UPSCALE,
}
_MASKED = {
    MaskedChoice.fill: MaskedContent.FILL,
    MaskedChoice.original: MaskedContent.ORIGINAL,
    MaskedChoice.latent_noise: MaskedContent.LATENT_NOISE,
    MaskedChoice.latent_nothing: MaskedContent.LATENT_NOTHING,
}

#: Img2Img fields the UI sets that no option covers.
UI_JOB_DEFAULTS: dict[str, Any] = {
    "seed_resize_from_w": UI_DEFAULTS["seed_resize_from_w"],
    "seed_resize_from_h": UI_DEFAULTS["seed_resize_from_h"],
}


def _in_panel(panel: str, params: tuple[inspect.Parameter, ...]) -> tuple[inspect.Parameter, ...]:
    """The same options shown under their own heading in ``--help``."""
    for param in params:
        param.annotation.__metadata__[0].rich_help_panel = panel
    return params


def _opt(name: str, kind: Any, default: Any, *flags: str, help: str, **kw: Any) -> inspect.Parameter:
    annotation = Annotated[kind, typer.Option(*flags, help=help, **kw)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


_UI_CFG = 7  # the UI slider's 7 (written "CFG scale: 7", spec §6.3)

GENERATION: tuple[inspect.Parameter, ...] = (
    _opt("prompt", str, "", "--prompt", "-p", help="Prompt."),
    _opt("negative", str, "", "--negative", "-n", help="Negative prompt."),
    _opt(
        "model",
        str,
        "demo",
        "--model",
        "-m",
        help="Checkpoint file or diffusers folder ('demo': the bundled model; 'demo-inpaint': its inpainting variant).",
    ),
    _opt("vae", Path | None, None, "--vae", help="External VAE file replacing the checkpoint's."),
    _opt("lora_dir", Path | None, None, "--lora-dir",
         help="Folder of LoRA/LyCORIS files that <lora:name:weight> tags in the prompt name."),
    _opt("embeddings_dir", Path | None, None, "--embeddings-dir",
         help="Folder of textual-inversion embeddings, used where the prompt names them."),
    _opt(
        "steps",
        int,
        UI_DEFAULTS["steps"],
        "--steps",
        help="Sampling steps (img2img runs about steps x denoise).",
    ),
    _opt("denoise", float, 0.75, "--denoise", "-d", help="Denoising strength, 0 to 1."),
    _opt("cfg", float, float(_UI_CFG), "--cfg", help="CFG scale."),
    _opt(
        "image_cfg",
        float,
        UI_DEFAULTS["image_cfg_scale"],
        "--image-cfg",
        help="Image CFG scale (pix2pix models).",
    ),
    _opt("sampler", str, UI_DEFAULTS["sampler_name"], "--sampler", "-s", help="Sampler, by A1111 name."),
    _opt(
        "scheduler",
        str,
        "Automatic",
        "--scheduler",
        help="Schedule type (Automatic, Karras, Exponential, ...).",
    ),
    _opt("seed", int, -1, "--seed", help="Seed; -1 for a random one."),
    _opt("subseed", int, -1, "--subseed", help="Variation seed; -1 for a random one."),
    _opt("subseed_strength", float, 0.0, "--subseed-strength", help="Variation strength, 0 to 1."),
    _opt(
        "size", str | None, None, "--size", help="Processing size WIDTHxHEIGHT (default: the input's size)."
    ),
    _opt(
        "scale_by", float | None, None, "--scale-by", help="Processing size as a factor of the input's size."
    ),
    _opt(
        "resize_mode",
        ResizeChoice,
        ResizeChoice.just,
        "--resize-mode",
        help="How the input is fitted to the size.",
    ),
    _opt("batch_size", int, 1, "--batch-size", help="Images per sampler run."),
    _opt("batch_count", int, 1, "--batch-count", help="Sampler runs per input."),
    _opt("clip_skip", int, 1, "--clip-skip", help="CLIP layers to skip from the end."),
    _opt("emphasis", str, "Original", "--emphasis",
         help="How (word:1.2) weights apply: Original, 'No norm', Ignore or None."),
    _opt("noise_multiplier", float, 1.0, "--noise-multiplier", help="Initial noise multiplier for img2img."),
    _opt(
        "color_correction",
        bool,
        False,
        "--color-correction",
        help="Match the output's colours to the input's.",
    ),
    _opt(
        "from_infotext",
        Path | None,
        None,
        "--from-infotext",
        help="Re-run with the settings stored in this image.",
    ),
    _opt("style", list[str] | None, None, "--style", help="Prompt style to apply (repeatable, in order)."),
    _opt("styles_file", Path | None, None, "--styles-file", help="A1111 styles.csv holding the styles."),
) + _in_panel(
    "Speed (off by default; each is named in the infotext)",
    (
        _opt("ngms", float, 0.0, "--ngms", help="A1111 NGMS (s_min_uncond): skip the negative prompt on every "
             "other step below this sigma; 0 = off."),
        _opt("ngms_all_steps", bool, False, "--ngms-all-steps", help="NGMS on every step, not every other."),
        _opt("skip_early_cfg", float, 0.0, "--skip-early-cfg",
             help="A1111 Skip Early CFG: ignore the negative prompt on this fraction of the first steps, 0-1."),
        _opt("pad_conds", bool, False, "--pad-conds",
             help="A1111 pad_cond_uncond: pad prompt/negative to one length (one UNet call; changes images)."),
        _opt("pad_conds_v0", bool, False, "--pad-conds-v0", help="A1111's pre-1.6 padding (overrides --pad-conds)."),
        _opt("token_merging", float, 0.0, "--token-merging",
             help="A1111 token merging (ToMe) ratio in [0, 1): merge this share of the full-resolution "
             "self-attention tokens; 0 = off."),
        _opt("feature_cache", int, 0, "--feature-cache",
             help="Reuse the UNet's deep features: full UNet every N steps (0 = off; approximate)."),
        _opt("feature_cache_depth", int, 1, "--feature-cache-depth",
             help="Outer UNet blocks that still run on cached steps (1 = fastest)."),
    ),
)

MASK: tuple[inspect.Parameter, ...] = _in_panel(
    "Inpainting",
    (
        _opt("mask_blur", int, 4, "--mask-blur", help="Mask blur (both axes), pixels."),
        _opt(
            "mask_blur_x",
            int | None,
            None,
            "--mask-blur-x",
            help="Horizontal mask blur (overrides --mask-blur).",
        ),
        _opt(
            "mask_blur_y",
            int | None,
            None,
            "--mask-blur-y",
            help="Vertical mask blur (overrides --mask-blur).",
        ),
        _opt("invert_mask", bool, False, "--invert-mask", help="Inpaint the unmasked area instead."),
        _opt(
            "masked_content",
            MaskedChoice,
            MaskedChoice.original,
            "--masked-content",
            help="Start of the masked area.",
        ),
        _opt(
            "area",
            AreaChoice,
            AreaChoice.whole,
            "--area",
            help="Inpaint area: the whole picture or only the masked part.",
        ),
        _opt(
            "padding",
            int,
            UI_DEFAULTS["inpaint_full_res_padding"],
            "--padding",
            help="Padding around the masked part, pixels.",
        ),
        _opt(
            "no_mask_round", bool, False, "--no-mask-round", help="Keep soft latent mask edges (no rounding)."
        ),
    ),
)

DEVICE: tuple[inspect.Parameter, ...] = _in_panel(
    "Device",
    (
        _opt("precision", PrecisionChoice, PrecisionChoice.auto, "--precision", help="Compute precision."),
        _opt(
            "device",
            str | None,
            None,
            "--device",
            help="torch device (default: cuda if available, else cpu).",
        ),
        _opt(
            "threads",
            int | None,
            None,
            "--threads",
            help="CPU threads (default: one per core; 1 is faster when other jobs share the CPU).",
        ),
        _opt("vae_cache", int, 16, "--vae-cache", help="VAE encodes kept for repeated inputs (0: off)."),
        _opt("max_memory", str | None, None, "--max-memory",
             help="Memory budget, e.g. 6G or 512M (default: what the machine has free); the VAE tiles to fit."),
        _opt("fast", bool, False, "--fast", help="Fast preset: bf16 where native, NGMS 1, token merging 0.5, feature cache 2/2 (named in the infotext)."),
        _opt(
            "backend",
            BackendChoice,
            BackendChoice.torch,
            "--backend",
            help="UNet/VAE runtime: torch, or openvino (CPU; pip install 'retouch[openvino]'; "
            "converted models cached under $RETOUCH_CACHE_DIR or ~/.cache/retouch).",
        ),
    ),
)


def engine_options(vae_cache: int, max_memory: str | None, fast: bool) -> dict[str, Any]:
    """``Engine`` keywords of ``--vae-cache``/``--max-memory``/``--fast``, checked before any model loads."""
    from retouch.memory import parse_memory

    if isinstance(vae_cache, bool) or not isinstance(vae_cache, int) or vae_cache < 0:
        raise CliError(f"--vae-cache must be a whole number >= 0 (0 turns the VAE cache off); got {vae_cache!r}")
    if max_memory is not None:
        try:
            parse_memory(max_memory)
        except ValueError as exc:
            raise CliError(f"--max-memory: {exc}") from None
    return {"vae_cache_size": vae_cache, "max_memory": max_memory, "preset": "fast" if fast else None}


def with_options(*groups: Iterable[inspect.Parameter]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a ``(ctx, **opts)`` command function the signature of its own parameters plus ``groups``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [
            p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD
        ]
        extra = [p for group in groups for p in group]
        fn.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
        return fn

    return decorate


def _cfg(value: float) -> int | float:
    """The UI sends integral slider values as ints (``CFG scale: 7``), so do the same."""
    return int(value) if float(value).is_integer() else value


_FIELDS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "prompt": lambda v: {"prompt": v},
    "negative": lambda v: {"negative_prompt": v},
    "steps": lambda v: {"steps": v},
    "denoise": lambda v: {"denoising_strength": v},
    "cfg": lambda v: {"cfg_scale": _cfg(v)},
    "image_cfg": lambda v: {"image_cfg_scale": v},
    "sampler": lambda v: {"sampler_name": v},
    "scheduler": lambda v: {"scheduler": v},
    "seed": lambda v: {"seed": v},
    "subseed": lambda v: {"subseed": v},
    "subseed_strength": lambda v: {"subseed_strength": v},
    "resize_mode": lambda v: {"resize_mode": _RESIZE[ResizeChoice(v)]},
    "batch_size": lambda v: {"batch_size": v},
    "batch_count": lambda v: {"n_iter": v},
    "clip_skip": lambda v: {"clip_skip": v},
    "emphasis": lambda v: {"emphasis": v},
    "noise_multiplier": lambda v: {"initial_noise_multiplier": v},
    "color_correction": lambda v: {"img2img_color_correction": bool(v)},
    "mask_blur": lambda v: {"mask_blur": v},
    "invert_mask": lambda v: {"inpainting_mask_invert": int(bool(v))},
    "masked_content": lambda v: {"inpainting_fill": _MASKED[MaskedChoice(v)]},
    "area": lambda v: {"inpaint_full_res": AreaChoice(v) is AreaChoice.only_masked},
    "padding": lambda v: {"inpaint_full_res_padding": v},
    "no_mask_round": lambda v: {"mask_round": not v},
    "ngms": lambda v: {"s_min_uncond": v},
    "ngms_all_steps": lambda v: {"s_min_uncond_all": bool(v)},
    "skip_early_cfg": lambda v: {"skip_early_cond": v},
    "pad_conds": lambda v: {"pad_cond_uncond": bool(v)},
    "pad_conds_v0": lambda v: {"pad_cond_uncond_v0": bool(v)},
    "token_merging": lambda v: {"token_merging_ratio": v},
    "feature_cache": lambda v: {"feature_cache_interval": v},
    "feature_cache_depth": lambda v: {"feature_cache_depth": v},
}


def job_fields(
    opts: Mapping[str, Any], explicit: Iterable[str], recalled: Mapping[str, Any]
) -> dict[str, Any]:
    """Img2Img keyword arguments: option defaults < infotext values (``recalled``) < explicit options."""
    explicit = set(explicit)
    fields: dict[str, Any] = dict(UI_JOB_DEFAULTS)
    for name, convert in _FIELDS.items():
        if name in opts:
            fields.update(convert(opts[name]))
    fields.update(recalled)
    for name in explicit & _FIELDS.keys():
        fields.update(_FIELDS[name](opts[name]))
    fields.pop("width", None)
    fields.pop("height", None)
    if opts.get("mask_blur_x") is not None or opts.get("mask_blur_y") is not None:
        blur = fields.pop("mask_blur", None)
        blur = 4 if blur is None else blur
        x, y = opts.get("mask_blur_x"), opts.get("mask_blur_y")
        fields.update(
            mask_blur=None, mask_blur_x=blur if x is None else x, mask_blur_y=blur if y is None else y
        )
    return fields


_WXH = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def processing_size(
    opts: Mapping[str, Any], explicit: Iterable[str], recalled: Mapping[str, Any], image_size: tuple[int, int]
) -> tuple[int, int]:
    """(width, height): ``--size``, else ``--scale-by``, else the infotext's Size, else the input's size
    floored to a multiple of 8 (A1111's "Resize by": ``int(w * scale)`` minus ``% 8``)."""
    explicit = set(explicit)
    size, scale = opts.get("size"), opts.get("scale_by")
    if size is not None and scale is not None:
        raise CliError("give either --size or --scale-by, not both")
    if size is not None:
        m = _WXH.match(size)
        if m is None:
            raise CliError(f"--size must look like WIDTHxHEIGHT, e.g. 512x768; got {size!r}")
        return int(m.group(1)), int(m.group(2))
    if scale is None and "width" in recalled and "height" in recalled and "scale_by" not in explicit:
        return int(recalled["width"]), int(recalled["height"])
    factor = 1.0 if scale is None else scale
    if not factor > 0:
        raise CliError(f"--scale-by must be a positive number; got {factor}")
    w, h = int(image_size[0] * factor), int(image_size[1] * factor)
    w, h = w - w % 8, h - h % 8
    if w < 8 or h < 8:
        raise CliError(
            f"the input is {image_size[0]}x{image_size[1]}; scaled by {factor} it is smaller than 8x8 pixels"
        )
    return w, h
