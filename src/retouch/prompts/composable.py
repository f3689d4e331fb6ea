"""Composable diffusion's ``AND``: A1111's ``get_multicond_prompt_list`` (spec a1111-prompts.md §1.3).

A prompt is split on the word ``AND`` (upper case, whole word: ``\\bAND\\b``), before any other prompt
syntax except extra-network tags. Each piece may end in ``:weight`` (``[-+]?(\\d+\\.?|\\d*\\.\\d+)``, no
exponent; spaces around the colon allowed); the weight and trailing whitespace are removed, leading
whitespace stays. Without a suffix the weight is 1.0. A prompt without ``AND`` is one piece, so
``photo of cat:1.2`` is ``[("photo of cat", 1.2)]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["split_and", "multicond_prompt_list"]

_AND = re.compile(r"\bAND\b")
# lazy text (newlines included), then an optional ":number", then trailing whitespace to the end
_WEIGHTED = re.compile(r"((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """The ``AND`` sub-prompts of one prompt as ``(text, weight)``, in order (duplicates kept)."""
    out: list[tuple[str, float]] = []
    for piece in _AND.split(prompt):
        m = _WEIGHTED.match(piece)
        assert m is not None  # the pattern matches every string
        text, weight = m.group(1), m.group(2)
        out.append((text, float(weight) if weight is not None else 1.0))
    return out


def multicond_prompt_list(prompts: Sequence[str]) -> tuple[list[list[tuple[int, float]]], list[str]]:
    """A1111's ``get_multicond_prompt_list``: per prompt ``[(index, weight), ...]`` into one list of distinct
    sub-prompt texts for the whole batch (deduplicated by exact text, leading spaces included)."""
    texts: list[str] = []
    index_of: dict[str, int] = {}
    indexes: list[list[tuple[int, float]]] = []
    for prompt in prompts:
        row: list[tuple[int, float]] = []
        for text, weight in split_and(prompt):
            if text not in index_of:
                index_of[text] = len(texts)
                texts.append(text)
            row.append((index_of[text], weight))
        indexes.append(row)
    return indexes, texts
