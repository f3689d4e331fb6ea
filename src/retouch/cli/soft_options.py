"""The ``inpaint``/``batch`` options for soft masks (spec soft-masks.md §5.2), and their Img2Img fields.

``--soft-inpainting`` turns on A1111's soft inpainting with its six settings (A1111's defaults);
``--differential`` turns on differential diffusion; the seam options are Retouch's own, all off by
default. Help texts and defaults come from the ``retouch.params`` hook tables, as a web form's would.
Precedence as for every option: defaults < ``--from-infotext`` < options typed on the command line.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from retouch.cli.options import _in_panel, _opt
from retouch.params import DIFFERENTIAL_HOOKS, SEAM_HOOKS, SOFT_INPAINTING_HOOKS, FieldHook

__all__ = ["SOFT", "soft_fields"]

#: option name -> (soft inpainting setting, flag)
_SOFT_FLAGS = {
    "soft_schedule_bias": ("mask_blend_power", "--soft-schedule-bias"),
    "soft_preservation": ("mask_blend_scale", "--soft-preservation"),
    "soft_contrast_boost": ("inpaint_detail_preservation", "--soft-contrast-boost"),
    "soft_mask_influence": ("composite_mask_influence", "--soft-mask-influence"),
    "soft_diff_threshold": ("composite_difference_threshold", "--soft-diff-threshold"),
    "soft_diff_contrast": ("composite_difference_contrast", "--soft-diff-contrast"),
}
_DD_FLAGS = {"dd_strength": "strength", "dd_thresholds": "thresholds", "dd_reference": "reference"}


def _hook(hooks: tuple[FieldHook, ...], name: str) -> FieldHook:
    return next(h for h in hooks if h.name == name)


def _option(name: str, hook: FieldHook, flag: str) -> inspect.Parameter:
    kinds: dict[str, Any] = {"float": float, "int": int, "bool": bool, "choice": str}
    extra = f" One of: {', '.join(hook.choices)}." if hook.choices else ""
    return _opt(name, kinds[hook.kind], hook.default, flag, help=hook.help + extra)


def _options() -> tuple[inspect.Parameter, ...]:
    params = [_opt("soft_inpainting", bool, False, "--soft-inpainting", help="A1111 soft inpainting.")]
    params += [_option(n, _hook(SOFT_INPAINTING_HOOKS, f), flag) for n, (f, flag) in _SOFT_FLAGS.items()]
    params.append(_opt("differential", bool, False, "--differential", help="Differential diffusion: "
                       "per-pixel strength from the blurred mask."))
    params += [_option(n, _hook(DIFFERENTIAL_HOOKS, f), "--" + n.replace("_", "-")) for n, f in _DD_FLAGS.items()]
    params += [_option(h.name, h, "--" + h.name.replace("_", "-")) for h in SEAM_HOOKS]
    return tuple(params)


SOFT: tuple[inspect.Parameter, ...] = _in_panel("Soft masks", _options())


def _slider(value: Any) -> Any:
    """Integral slider values as ints (``... contrast boost: 4``), as the CLI does for ``CFG scale: 7``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def soft_fields(opts: Mapping[str, Any], explicit: Iterable[str], recalled: Mapping[str, Any]) -> dict[str, Any]:
    """Img2Img soft-mask keyword arguments: option defaults < infotext (``recalled``) < typed options."""
    from retouch.params import DifferentialDiffusion, SoftInpainting

    explicit = set(explicit)
    fields: dict[str, Any] = {k: recalled[k] for k in ("soft_inpainting", "differential_diffusion") if k in recalled}
    for hook in SEAM_HOOKS:
        if hook.name in explicit or hook.name not in recalled:
            fields[hook.name] = opts.get(hook.name, hook.default)
        else:
            fields[hook.name] = recalled[hook.name]
    base = fields.get("soft_inpainting")
    if opts.get("soft_inpainting") or (base is not None and explicit & _SOFT_FLAGS.keys()):
        values = {f: getattr(base, f) for f, _ in _SOFT_FLAGS.values()} if base is not None else {}
        for name, (f, _) in _SOFT_FLAGS.items():
            if name in explicit or f not in values:
                values[f] = _slider(opts.get(name, _hook(SOFT_INPAINTING_HOOKS, f).default))
        fields["soft_inpainting"] = SoftInpainting(**values)
    dd = fields.get("differential_diffusion")
    if opts.get("differential") or (dd is not None and explicit & _DD_FLAGS.keys()):
        values = {f: getattr(dd, f) for f in _DD_FLAGS.values()} if dd is not None else {}
        for name, f in _DD_FLAGS.items():
            if name in explicit or f not in values:
                values[f] = opts.get(name, _hook(DIFFERENTIAL_HOOKS, f).default)
        fields["differential_diffusion"] = DifferentialDiffusion(**values)
    return fields
