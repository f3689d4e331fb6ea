"""``AND`` splitting and sub-prompt weights: A1111's ``get_multicond_prompt_list`` (spec §1.3, cases 16-18)."""

from __future__ import annotations

import pytest

from retouch.prompts import multicond_prompt_list, split_and


def test_case_16_weights_and_leading_space_kept() -> None:
    assert multicond_prompt_list(["a cat :1.2 AND a dog:0.5"]) == ([[(0, 1.2), (1, 0.5)]], ["a cat", " a dog"])


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a:1.2", [("a", 1.2)]),
        ("a cat:1e2", [("a cat:1e2", 1.0)]),  # no exponent in the weight
        ("a cat and a dog", [("a cat and a dog", 1.0)]),
        ("a cat AND AND a dog", [("a cat", 1.0), ("", 1.0), (" a dog", 1.0)]),
        ("AND a", [("", 1.0), (" a", 1.0)]),
        ("a ANDb", [("a ANDb", 1.0)]),
        ("a\nAND\nb", [("a", 1.0), ("\nb", 1.0)]),
        ("photo of cat:1.2", [("photo of cat", 1.2)]),
        ("(cat:1.2)", [("(cat:1.2)", 1.0)]),
        ("a : -0.5  ", [("a", -0.5)]),
        ("a:.5 AND b:2.", [("a", 0.5), (" b", 2.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_case_17_split_and(prompt: str, expected: list) -> None:
    assert split_and(prompt) == expected


def test_case_17_texts_across_the_batch() -> None:
    assert multicond_prompt_list(["a cat AND AND a dog"])[1] == ["a cat", "", " a dog"]
    assert multicond_prompt_list(["AND a"])[1] == ["", " a"]


def test_case_18_dedup_across_the_batch_by_exact_text() -> None:
    assert multicond_prompt_list(["a AND b", "b AND a"]) == (
        [[(0, 1.0), (1, 1.0)], [(2, 1.0), (3, 1.0)]],
        ["a", " b", "b", " a"],
    )
    assert multicond_prompt_list(["x AND y", "x AND y:2"]) == ([[(0, 1.0), (1, 1.0)], [(0, 1.0), (1, 2.0)]], ["x", " y"])
