"""Extra-network tags ``<kind:args>`` and LoRA multipliers (spec a1111-prompts.md §0.1 step 3, §5.6).

Every tag matching ``<(\\w+):([^>]+)>`` is removed from the prompt (replaced by ``""``, so neighbouring
spaces stay), whatever its kind: unknown kinds such as ``<LORA:x>`` (the kind is case-sensitive) vanish
from the text too. The arguments are split on every ``:``; an argument that ``split("=", 2)`` cuts in
exactly two is named, the others positional. For a batch, tags are stripped from every positive prompt
but only the first prompt's tags take effect (A1111's ``parse_prompts``); negative prompts are not parsed
at all, so a tag there stays literal text: do not pass them here.

LoRA (kind ``lora`` or its alias ``lyco``): ``name = positional[0]``; ``te`` = ``positional[1]`` or 1.0,
then ``te=`` overrides; ``unet`` = ``positional[2]`` or else ``te`` (after the override), then ``unet=``
overrides; ``dyn`` = ``int(positional[3])``, then ``dyn=``. Where A1111 raises (``<lora:x:abc>``,
``<lora:x:>``, no name) this raises :class:`ParamError` naming the tag. Deliberately stricter than A1111:
a multiplier that is not finite (``inf``, ``nan``) and a ``dyn`` below 1 are refused too (A1111 accepts
them and produces NaN weights or a sliced-away delta).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from retouch.params import ParamError
from retouch.prompts.types import NetworkTag

__all__ = ["extra_networks", "parse_batch_extra_networks", "LoraTag", "lora_tag", "LORA_KINDS"]

LORA_KINDS = ("lora", "lyco")
_TAG = re.compile(r"<(\w+):([^>]+)>")


def _tag(kind: str, args: str, text: str) -> NetworkTag:
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in args.split(":"):
        parts = item.split("=", 2)
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    return NetworkTag(kind, tuple(positional), named, text)


def extra_networks(prompt: str) -> tuple[str, list[NetworkTag]]:
    """``(prompt without any tag, the tags in order)``; every kind is returned, the caller picks."""
    tags: list[NetworkTag] = []

    def found(m: re.Match[str]) -> str:
        tags.append(_tag(m.group(1), m.group(2), m.group(0)))
        return ""

    return _TAG.sub(found, prompt), tags


def parse_batch_extra_networks(prompts: Sequence[str]) -> tuple[list[str], list[NetworkTag]]:
    """Tags stripped from every (positive) prompt of a batch; the tags of the first prompt only (case 43)."""
    stripped: list[str] = []
    first: list[NetworkTag] = []
    for i, prompt in enumerate(prompts):
        text, tags = extra_networks(prompt)
        stripped.append(text)
        if i == 0:
            first = tags
    return stripped, first


@dataclass(frozen=True)
class LoraTag:
    """A LoRA activation: text-encoder and UNet multipliers, optional ``dyn`` rank limit."""

    name: str
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None


def _label(tag: NetworkTag) -> str:
    if tag.text:
        return tag.text
    items = [*tag.positional, *(f"{k}={v}" for k, v in tag.named.items())]
    return f"<{tag.kind}:{':'.join(items)}>"


def _float(tag: NetworkTag, what: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ParamError(f"LoRA tag {_label(tag)}: the {what} multiplier {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ParamError(f"LoRA tag {_label(tag)}: the {what} multiplier {value!r} is not finite")
    return x


def _int(tag: NetworkTag, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ParamError(f"LoRA tag {_label(tag)}: dyn {value!r} is not an integer") from None
    if n < 1:
        raise ParamError(f"LoRA tag {_label(tag)}: dyn must be >= 1, got {n}")
    return n


def lora_tag(tag: NetworkTag) -> LoraTag:
    """The LoRA named by a ``<lora:...>``/``<lyco:...>`` tag with A1111's multiplier rules (case 36)."""
    if tag.kind not in LORA_KINDS:
        raise ParamError(f"{_label(tag)} is not a LoRA tag (kinds {', '.join(LORA_KINDS)})")
    pos = tag.positional
    if not pos:
        raise ParamError(f"LoRA tag {_label(tag)} names no network (the first argument without '=')")
    te = _float(tag, "te", pos[1]) if len(pos) > 1 else 1.0
    if "te" in tag.named:
        te = _float(tag, "te", tag.named["te"])
    unet = _float(tag, "unet", pos[2]) if len(pos) > 2 else te
    if "unet" in tag.named:
        unet = _float(tag, "unet", tag.named["unet"])
    dyn = _int(tag, pos[3]) if len(pos) > 3 else None
    if "dyn" in tag.named:
        dyn = _int(tag, tag.named["dyn"])
    return LoraTag(pos[0], te, unet, dyn)
