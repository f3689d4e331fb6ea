"""Emphasis and BREAK, ``parse_attention`` = A1111's ``parse_prompt_attention`` (spec §2.1, cases 19-23)."""

from __future__ import annotations

import pytest

from retouch.params import ParamError
from retouch.prompts import BREAK, is_break, parse_attention


def test_case_19_weights_brackets_and_escapes() -> None:
    assert parse_attention("a (b:1.5) [c] \\(d\\)") == [
        ("a ", 1.0), ("b", 1.5), (" ", 1.0), ("c", 0.9090909090909091), (" (d)", 1.0),
    ]


def test_case_20_nested_weights_and_merging() -> None:
    assert parse_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
        (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("((a))", [("a", 1.2100000000000002)]),
        ("[[a]]", [("a", 0.8264462809917354)]),
        ("[(a:1.5)]", [("a", 1.3636363636363635)]),
        ("((a:1.3))", [("a", 1.4300000000000002)]),
        ("(a:1.1)(b)", [("ab", 1.1)]),
    ],
)
def test_case_21_nesting_multiplies(text: str, expected: list) -> None:
    assert parse_attention(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(a:1e2)", [("a:1e2", 1.1)]),
        ("(a:1.2:3)", [("a:1.2", 3.0)]),
        ("(a\\:1.2)", [("a", 1.2)]),
        ("a\\b", [("ab", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("(:1.2)", [("", 1.0)]),
        ("(a:1.2 b)", [("a:1.2 b", 1.1)]),
        ("(a:b:1.2)", [("a:b", 1.2)]),
        ("(a:0)", [("a", 0.0)]),
        ("(a:-1)", [("a", -1.0)]),
        ("(a: 1.2 )", [("a", 1.2)]),
        ("a:1.2)", [("a:1.2)", 1.0)]),  # a closer with nothing open is text
        ("", [("", 1.0)]),
        ("\\\\", [("\\", 1.0)]),
        ("[a:b:0.5]", [("a:b:0.5", 0.9090909090909091)]),
    ],
)
def test_case_22_edge_syntax(text: str, expected: list) -> None:
    assert parse_attention(text) == expected


@pytest.mark.parametrize("text", ["(a:1.3.5)", "(a:.)", "x (y (a:1.3.5)) z"])
def test_case_23_bad_weight_raises_param_error_naming_the_bracket(text: str) -> None:
    with pytest.raises(ParamError, match=r"1\.3\.5|'\.'"):
        parse_attention(text)


def test_bad_weight_without_open_bracket_is_text() -> None:
    assert parse_attention("a:1.3.5)") == [("a:1.3.5)", 1.0)]


def test_break_outside_brackets_is_the_marker() -> None:
    assert parse_attention("a BREAK b") == [("a", 1.0), BREAK, ("b", 1.0)]
    assert parse_attention("BREAK") == [("", 1.0), BREAK, ("", 1.0)]
    assert parse_attention("a\nBREAK\n b") == [("a", 1.0), BREAK, ("b", 1.0)]


def test_break_inside_brackets_is_multiplied_and_stops_being_a_break() -> None:
    frags = parse_attention("(a BREAK b)")
    assert frags == [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]
    assert not any(is_break(t, w) for t, w in frags)
    # Spec §2.1 says "(BREAK:-1)" is a break; A1111's function gives the marker -1 x -1 = +1, the word
    # "break" (measured). An even number of -1 weights does give the marker back.
    assert parse_attention("(BREAK:-1)") == [("", -1.0), ("BREAK", 1.0), ("", -1.0)]
    assert [is_break(t, w) for t, w in parse_attention("((BREAK:-1):-1)")] == [False, True, False]


@pytest.mark.parametrize("text", ["aBREAKb", "a BREAKb", "a break b", "a Break b"])
def test_break_needs_upper_case_and_word_boundaries(text: str) -> None:
    assert parse_attention(text) == [(text, 1.0)]


def test_weights_are_floats() -> None:
    assert all(type(w) is float for _, w in parse_attention("a BREAK (b) [c] (d:2)"))
