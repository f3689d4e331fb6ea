"""A1111 infotext: the "parameters" text stored in PNGs, written and parsed (spec §6).

Layout (spec §6.1)::

    <prompt, may span lines>
    Negative prompt: <negative prompt>      (only when the negative prompt is non-empty)
    <key>: <value>, <key>: <value>, ...

:func:`format_infotext` writes it from a prompt, a negative prompt and an ordered mapping;
:func:`split_infotext` is the exact inverse for text that :func:`format_infotext` wrote (prompt,
negative prompt, parameters as strings, in order), and :func:`parse_infotext` adds A1111's
``parse_generation_parameters`` extras (``Size-1``/``Size-2``, absent-key defaults of spec §6.2).

Pure: no torch, no files. The engine imports this module, so it lives at the package top level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

__all__ = ["format_infotext", "split_infotext", "parse_infotext", "quote", "unquote", "PARSE_DEFAULTS"]

#: One ``key: value`` pair of the settings line; a value is either JSON-quoted or runs to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_WXH = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"

#: Values A1111 assumes for keys absent from an infotext (spec §6.2), as the strings a parse yields.
PARSE_DEFAULTS: dict[str, str] = {
    "Clip skip": "1",
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": "32",
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
}

#: Legacy sampler names carrying the schedule ("DPM++ 2M Karras"), split when no Schedule type is given.
_LEGACY_SCHEDULES = ("Karras", "Exponential")


def quote(value: object) -> str:
    """``str(value)``, JSON-encoded (non-ASCII kept) when it contains ``,``, ``:`` or a newline (§6.1)."""
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    """Undo :func:`quote`: a value in double quotes is JSON-decoded; anything else is returned as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The A1111 infotext for one image (spec §6.1).

    ``params`` is written in its own order as ``key: value``; None values are left out, a value equal to
    its key is written as the bare key, and numbers use Python ``str()`` (``7.0`` stays ``"7.0"``).
    The whole text is stripped, so empty parts leave no blank lines.
    """
    pairs = []
    for key, value in params.items():
        if value is None:
            continue
        pairs.append(key if str(value) == key else f"{key}: {quote(value)}")
    negative = f"\n{_NEGATIVE} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{', '.join(pairs)}".strip()


def split_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """Split an infotext into ``(prompt, negative_prompt, params)``; the inverse of :func:`format_infotext`.

    Follows A1111's ``parse_generation_parameters``: the last line is the settings line only when it
    holds at least 3 ``key: value`` pairs (otherwise it belongs to the prompt); every line from the one
    starting with ``Negative prompt:`` on is the negative prompt; prompt lines are stripped. ``params``
    keeps the settings line's order, with quoted values decoded; all values are strings.
    """
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not negative and line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    params = {key: unquote(value) for key, value in _PARAM.findall(last)}
    return "\n".join(prompt), "\n".join(negative), params


def parse_infotext(text: str) -> dict[str, object]:
    """Parse an infotext the way A1111's ``parse_generation_parameters`` does (spec §6.2).

    Returns ``{"Prompt": str, "Negative prompt": str, <key>: str, ...}``. Every value is a string
    (A1111 converts none of the keys img2img uses; callers cast). Additions to the settings line:

    * a ``WxH`` value (``Size: 512x512``, ``Seed resize from: 0x0``) also gives ``<key>-1`` (width) and
      ``<key>-2`` (height); unlike A1111 the ``<key>`` itself is kept too;
    * a legacy sampler name with its schedule (``DPM++ 2M Karras``) and no ``Schedule type`` becomes
      ``Sampler: DPM++ 2M`` and ``Schedule type: Karras``;
    * absent keys get A1111's defaults, :data:`PARSE_DEFAULTS` (``Clip skip: 1``, ``RNG: GPU``,
      ``Mask mode: Inpaint masked``, ``Masked area padding: 32``, ...).
    """
    prompt, negative, params = split_infotext(text)
    res: dict[str, object] = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in params.items():
        res[key] = value
        size = _WXH.match(value)
        if size is not None:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
    sampler = params.get("Sampler")
    if sampler is not None and "Schedule type" not in params:
        for schedule in _LEGACY_SCHEDULES:
            if sampler.endswith(" " + schedule):
                res["Sampler"] = sampler[: -len(schedule) - 1]
                res["Schedule type"] = schedule
    for key, default in PARSE_DEFAULTS.items():
        res.setdefault(key, default)
    return res
