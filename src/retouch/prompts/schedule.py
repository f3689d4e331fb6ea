"""Prompt editing and alternation: A1111's per-step prompt schedule (spec a1111-prompts.md §1.4-§1.7, §1.9).

``prompt_schedule(prompt, steps)`` equals A1111 v1.10.1's
``get_learned_conditioning_prompt_schedules([prompt], steps)[0]``: a list of ``(end_at_step, text)``.
``[from:to:when]``, ``[to:when]``, ``[from::when]`` switch text at a step, ``[a|b|c]`` alternates
every step, nesting works, and emphasis brackets pass through verbatim. A prompt that the grammar
rejects (a ``|`` outside brackets, ``[a:b:c:0.5]``, an unclosed ``[``...) is one entry, taken literally.

**The grammar** is the one of spec §1.4, written here for lark 1.1.2 (the version A1111 pins; other
versions accept and reject different prompts, §1.9), parsed with lark's Earley parser and dynamic
lexer as A1111 does. The parser is built once per process, on first use. A prompt that no reading
can give an edit or an alternation (no ``[``, or neither a ``|`` nor a ``: NUMBER ]``) skips it, since
every reading renders it verbatim; the parts of the 256 most recent parsed prompts are memoised. A
prompt with an edit costs lark's Earley parse the first time it is seen: about 0.3 s for a 150-token
prompt with 18 emphasis brackets on a 2-core machine (A1111 pays the same; ``bench/prompt_parse.py``).

**Equally ranked readings (lark 1.1.2 and ``PYTHONHASHSEED``).** The grammar is ambiguous: every bracket
may also be read as a stray character. Lark ranks the readings, and where two rank equal lark 1.1.2
takes whichever its hash-ordered sets yield first, so A1111's answer depends on the process's string
hash seed. Measured with A1111's own grammar under lark 1.1.2, seeds 0-9, 10 steps:

=====================  ==================================  ==================================
prompt                 PYTHONHASHSEED=0                    PYTHONHASHSEED=1
=====================  ==================================  ==================================
``x [a:b:0.5]: y``     ``[(5, 'x a: y'), (10, 'x b: y')]``  the same
``[a:b:0.5]:``         literal                             ``[(5, 'a:'), (10, 'b:')]``
``[b:c:0.5]) x``       literal                             ``[(5, 'b) x'), (10, 'c) x')]``
``x [a:b:0.5]) y``     ``[(5, 'x a) y'), (10, 'x b) y')]``  the same
``[a:b:0.5]::``        ``[(5, 'a::'), (10, 'b::')]``        the same
=====================  ==================================  ==================================

and each of these is literal under some other seed (3 for the first, 2 for the last). In a fuzz of
4,000 short prompts over ``a b c space [ ] ( ) : | 0.5 2 \\``, 19 depended on the seed, all of one
shape: a prompt-editing bracket followed by a stray ``]``, ``)`` or ``:``, read either with the edit or
wholly literally. In a second fuzz of 3,000 prompts built from pieces such as ``cat``, ``(red:1.2)``,
``[a:b:0.3]``, ``[x|y]``, ``[e:``, ``::``, 327 (11%) depended on the seed (seeds 0-5), some with up
to 8 different answers.

Retouch's rule, the same in every process: **among equally ranked readings, take the one whose last
part starts latest** (lark's ranking first, then this; ``rank`` in ``_parser`` below). For the
seed-dependent prompts inspected this is the reading with the edits applied; it is one of A1111's own
answers for every prompt of both fuzzes (found among seeds 0-80), and lark 1.2's and 1.3's answer for
the first four rows above. Every prompt whose A1111 result does not depend on the seed (all others of
both fuzzes, and every case of spec §7) gets A1111's result. The spec's §1.9 column "lark 1.1.2" was
one process's draw.

**Step arithmetic** (§1.5): a ``when`` with a ``.`` is a fraction of the steps, else a step number;
``int`` truncates; ``when`` is capped at ``steps``; values below 1 switch before the first step. With
``hires_steps`` the fraction counts from 1.0 and integers from ``steps`` (the first pass). ``use_old_scheduling``
is A1111's pre-1.6 rule (``v < 1`` is a fraction). A ``when`` too large for an integer (``1e999``), where
A1111 raises ``OverflowError``, raises :class:`ParamError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from retouch.params import ParamError

__all__ = ["prompt_schedule", "prompt_schedules", "conditioning_index", "GRAMMAR"]

# Spec §1.4 in lark's notation. ``line`` keeps every token (stray brackets and colons stay as text);
# ``group`` is an emphasis bracket, kept verbatim; ``edit`` and ``alt`` drop their brackets, colons and
# bars. Optional parts appear as None (lark's maybe_placeholders, on by default since lark 1.0).
GRAMMAR = r"""
!line: (seq | /[][():]/+)*
seq: (group | edit | alt | word | SPACE)*
!group: "(" seq ")"
      | "(" seq ":" seq ")"
      | "[" seq "]"
edit: "[" [seq ":"] seq ":" [SPACE] NUMBER [SPACE] "]"
alt: "[" seq ("|" [seq])+ "]"
SPACE: /\s+/
word: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""

Part = Any  # str | _Edit | _Alt


@dataclass(frozen=True)
class _Edit:
    before: tuple[Part, ...]
    after: tuple[Part, ...]
    when: str  # the NUMBER text, as written


@dataclass(frozen=True)
class _Alt:
    options: tuple[tuple[Part, ...], ...]


@cache
def _parser() -> tuple[Any, Any, type]:
    """Lark parser (forest output), the tree-shaping callbacks and the deterministic resolver class."""
    import lark
    from lark.parse_tree_builder import ParseTreeBuilder
    from lark.parsers.earley_forest import ForestToParseTree

    if lark.__version__ != "1.1.2":  # the accept/reject decisions are lark-version specific (§1.9)
        raise RuntimeError(f"retouch.prompts needs lark==1.1.2 (A1111's pin), found {lark.__version__}")
    parser = lark.Lark(GRAMMAR, start="line", parser="earley", lexer="dynamic", ambiguity="forest",
                       maybe_placeholders=True)
    # The same callbacks lark builds for ambiguity="resolve" (positions off, not "explicit").
    callbacks = ParseTreeBuilder(parser.rules, lark.Tree, False, False, True).create_callback(None)

    def rank(packed: Any) -> tuple:
        # lark's own order first; among equals the latest split point, then the rule (a total order).
        split = packed.left.end if packed.left is not None else packed.parent.start
        return packed.sort_key, -split, str(packed.rule)

    class _Resolver(ForestToParseTree):  # type: ignore[misc]
        """lark's ``resolve`` walk with a hash-independent order of equally ranked derivations."""

        def visit_symbol_node_in(self, node: Any) -> Any:
            children = super().visit_symbol_node_in(node)
            return None if children is None else sorted(children, key=rank)

    return parser, callbacks, _Resolver


# A necessary condition for a prompt edit: its closing ": NUMBER ]" (the tokens are contiguous text).
_EDIT_END = re.compile(r":\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*\]")


def _may_edit(prompt: str) -> bool:
    """False when no reading of the prompt can hold an edit or an alternation; then every reading (or
    the literal fallback) renders the prompt verbatim, and the parser (lark's Earley: 0.1-0.3 s for a
    150-token prompt full of emphasis) is not needed."""
    return "[" in prompt and (("|" in prompt) or _EDIT_END.search(prompt) is not None)


@lru_cache(maxsize=256)
def _parse(prompt: str) -> tuple[Part, ...] | None:
    """The prompt as parts (memoised: the same prompt is parsed once per process while it stays among
    the 256 most recent); None where the grammar rejects it."""
    import lark

    parser, callbacks, resolver = _parser()
    try:
        forest = parser.parse(prompt)
    except lark.exceptions.LarkError:
        return None
    return _parts(resolver(lark.Tree, callbacks, None, True).transform(forest))


def _parts(node: Any) -> tuple[Part, ...]:
    from lark import Tree

    out: list[Part] = []
    for child in node.children:
        if not isinstance(child, Tree):
            out.append(str(child))
        elif child.data == "word":
            out.append(str(child.children[0]))
        elif child.data == "edit":
            before, after, _, when, _ = child.children
            out.append(_Edit(_parts(before) if before is not None else (), _parts(after), str(when)))
        elif child.data == "alt":
            out.append(_Alt(tuple(_parts(o) if o is not None else () for o in child.children)))
        else:  # seq, group
            out.extend(_parts(child))
    return tuple(out)


def _walk(parts: Sequence[Part]):  # every edit and alternation, nested ones included
    for part in parts:
        if isinstance(part, _Edit):
            yield part
            yield from _walk(part.before)
            yield from _walk(part.after)
        elif isinstance(part, _Alt):
            yield part
            for option in part.options:
                yield from _walk(option)


def _render(parts: Sequence[Part], step: int, whens: dict[int, int]) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, _Edit):
            out.append(_render(part.before if step <= whens[id(part)] else part.after, step, whens))
        else:
            out.append(_render(part.options[(step - 1) % len(part.options)], step, whens))
    return "".join(out)


def _check_steps(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamError(f"{name} must be an integer >= 1, got {value!r}")


def prompt_schedule(
    prompt: str, steps: int, *, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[tuple[int, str]]:
    """``[(end_at_step, text), ...]`` for one prompt: A1111's schedule for ``steps`` (its ``total_steps``).

    With ``hires_steps`` this is the hires second pass (``steps`` = the first pass's steps). See the
    module docstring for the grammar, the step rules and the one documented divergence.
    """
    _check_steps("steps", steps)
    if hires_steps is not None:
        _check_steps("hires_steps", hires_steps)
    if hires_steps is None or use_old_scheduling:
        total, int_offset, flt_offset = steps, 0, 0.0
    else:
        total, int_offset, flt_offset = hires_steps, steps, 1.0
    parts = _parse(prompt) if _may_edit(prompt) else None
    if parts is None:
        return [(total, prompt)]

    boundaries = {total}
    whens: dict[int, int] = {}
    for node in _walk(parts):
        if isinstance(node, _Alt):
            boundaries.update(range(1, total + 1))
            continue
        v = float(node.when)
        if use_old_scheduling:
            v = v * total if v < 1 else v
        elif "." in node.when:
            v = (v - flt_offset) * total
        else:
            v = v - int_offset
        try:
            when = min(total, int(v))
        except (OverflowError, ValueError):
            raise ParamError(f"prompt editing in {prompt!r}: the step {node.when!r} is out of range") from None
        whens[id(node)] = when
        if when >= 1:
            boundaries.add(when)
    return [(t, _render(parts, t, whens)) for t in sorted(boundaries)]


def prompt_schedules(
    prompts: Sequence[str], steps: int, *, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[tuple[int, str]]]:
    """:func:`prompt_schedule` for a batch; identical prompts are computed once (A1111's ``promptdict``)."""
    done: dict[str, list[tuple[int, str]]] = {}
    for p in prompts:
        if p not in done:
            done[p] = prompt_schedule(p, steps, hires_steps=hires_steps, use_old_scheduling=use_old_scheduling)
    return [list(done[p]) for p in prompts]


def conditioning_index(ends: Sequence[int], step: int) -> int:
    """Index of the schedule entry used at denoiser call ``step`` (0-based): the first entry with
    ``step <= end_at_step``, else 0 (a counter past the last boundary comes back to the first text,
    as A1111's ``reconstruct_cond_batch``; spec §1.7)."""
    for i, end in enumerate(ends):
        if step <= end:
            return i
    return 0
