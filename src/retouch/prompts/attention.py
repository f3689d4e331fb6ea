"""Emphasis weights and BREAK markers, as A1111 v1.10.1's ``parse_prompt_attention`` (spec §2.1).

``parse_attention("a (b:1.5) [c]")`` -> ``[("a ", 1.0), ("b", 1.5), (" ", 1.0), ("c", 1/1.1)]``.

The text is scanned left to right with one alternation tried in a fixed order (an escaped
bracket or backslash, a lone backslash, an opener, a weight closer ``:w)``, a closer, a run of
ordinary text, a lone ``:``). ``(`` multiplies what it encloses by 1.1, ``[`` by 1/1.1, ``(x:w)``
by ``w``; nested weights multiply, unclosed brackets still apply to the end of the text, and
unmatched closers are text. Text runs are split on ``BREAK`` (a whole word, upper case) into the
marker ``("BREAK", -1.0)``; a marker inside brackets gets multiplied like any entry, so
``(a BREAK b)`` encodes the word "break" with weight -1.1 (A1111's behaviour, kept). Finally,
neighbours whose weights are exactly equal (float ``==``) are merged.

Where A1111 raises ``ValueError`` (a weight such as ``1.3.5`` or ``.`` that ``float`` rejects) we
raise ``ParamError`` naming the fragment.
"""

from __future__ import annotations

import re

from retouch.params import ParamError

__all__ = ["BREAK", "ROUND", "SQUARE", "is_break", "parse_attention"]

BREAK: tuple[str, float] = ("BREAK", -1.0)
"""The fragment that closes a 75-token chunk (spec §2.4)."""



def is_break(text: str, weight: float) -> bool:
    """A fragment that closes the chunk: text ``BREAK`` with weight exactly -1 (spec §2.4)."""
    return text == "BREAK" and weight == -1


ROUND = 1.1
SQUARE = 1 / 1.1

# Alternatives in A1111's order; group "w" holds the number of a weight closer ":w)".
_TOKEN = re.compile(
    r"""
      \\[()\[\]\\]            # escaped bracket or backslash: the character itself
    | \\                      # any other backslash is dropped
    | [(\[]                   # openers
    | :\s*(?P<w>[+-]?[.\d]+)\s*\)   # weight closer
    | [)\]]                   # closers
    | [^\\()\[\]:]+           # ordinary text
    | :                       # a colon that closes nothing
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def _weight(number: str, fragment: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise ParamError(
            f"prompt emphasis {fragment!r}: {number!r} is not a number; write a weight like (word:1.2)"
        ) from None


def _merge_equal(entries: list[list]) -> list[tuple[str, float]]:
    merged: list[list] = []
    for text, weight in entries:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(text, float(weight)) for text, weight in merged]


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(text, weight)`` fragments, A1111 v1.10.1 ``parse_prompt_attention``.

    Returns at least one fragment (``[("", 1.0)]`` for an empty text); BREAK is ``("BREAK", -1.0)``.
    Raises ``ParamError`` for a weight that is not a number, e.g. ``(a:1.3.5)``.
    """
    entries: list[list] = []
    opened: dict[str, list[int]] = {"(": [], "[": []}

    def scale(start: int, factor: float) -> None:
        for entry in entries[start:]:
            entry[1] *= factor

    for match in _TOKEN.finditer(text):
        piece, number = match.group(0), match.group("w")
        if piece.startswith("\\"):
            entries.append([piece[1:], 1.0])
        elif piece in opened:
            opened[piece].append(len(entries))
        elif number is not None and opened["("]:
            scale(opened["("].pop(), _weight(number, piece))
        elif piece == ")" and opened["("]:
            scale(opened["("].pop(), ROUND)
        elif piece == "]" and opened["["]:
            scale(opened["["].pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i:
                    entries.append(list(BREAK))
                entries.append([part, 1.0])
    for start in opened["("]:
        scale(start, ROUND)
    for start in opened["["]:
        scale(start, SQUARE)
    return _merge_equal(entries) if entries else [("", 1.0)]
