"""Tokenizer text normalisation as A1111's tokenizers apply it (spec §2.3)."""

from __future__ import annotations

import pytest

from retouch.prompts import normalize_text


def test_curly_quotes_tokenize_as_straight_quotes(tokenize) -> None:
    assert tokenize(["\u201ccat\u201d"]) == [[257, 2368, 257]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\uff43\uff41\uff54", "cat"),  # full-width
        ("\ufb01sh", "fish"),  # ligature
        ("a&amp;b", "a&b"),
        ("  a \n\t b  ", "a b"),
        ("", ""),
        ("CAT", "CAT"),  # lower-casing is the tokenizer's
    ],
)
def test_examples(text: str, expected: str) -> None:
    assert normalize_text(text) == expected
    assert normalize_text(text, open_clip=True) == expected


def test_open_clip_unescapes_html_even_where_ftfy_does_not() -> None:
    # ftfy leaves entities alone in text that contains "<"; open_clip unescapes twice regardless.
    assert normalize_text("<x> a&amp;b") == "<x> a&amp;b"
    assert normalize_text("<x> a&amp;amp;b", open_clip=True) == "<x> a&b"


def test_full_width_and_ligature_reach_the_same_ids(tokenize) -> None:
    assert tokenize(["\uff43\uff41\uff54", "\ufb01sh"]) == tokenize(["cat", "fish"])
