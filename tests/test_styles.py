"""Prompt styles against A1111's modules/styles.py (v1.10.1): CSV reading and merge_prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouch.params import ParamError
from retouch.styles import apply_styles, load_styles, merge_prompts, parse_styles

CSV = (
    "\ufeffname,prompt,negative_prompt\n"
    '"Cinematic","cinematic still of {prompt}, film grain","cartoon, drawing"\n'
    "# comment row,ignored,ignored\n"
    'Sharp, "sharp focus, 8k", blurry\n'
    "Empty,,\n"
)


def test_csv_rows_with_quotes_bom_spaces_and_comments() -> None:
    styles = parse_styles(CSV)
    assert list(styles) == ["Cinematic", "Sharp", "Empty"]
    assert styles["Sharp"].prompt == "sharp focus, 8k" and styles["Sharp"].negative_prompt == "blurry"
    assert styles["Empty"].prompt == ""


def test_old_format_with_text_column() -> None:
    assert parse_styles("name,text\nOld,oil painting\n")["Old"].prompt == "oil painting"


def test_merge_prompts_as_a1111() -> None:
    """{prompt} is replaced (no stripping); otherwise ", ".join of the stripped non-empty parts."""
    assert merge_prompts("cinematic still of {prompt}, film grain", " a cat ") == "cinematic still of  a cat , film grain"
    assert merge_prompts(" sharp focus ", " a cat ") == "a cat, sharp focus"
    assert merge_prompts("sharp", "") == "sharp"
    assert merge_prompts("", "a cat") == "a cat"


def test_styles_apply_in_order_to_both_prompts() -> None:
    styles = parse_styles(CSV)
    prompt, negative = apply_styles("a cat", "ugly", ["Cinematic", "Sharp"], styles)
    assert prompt == "cinematic still of a cat, film grain, sharp focus, 8k"
    assert negative == "ugly, cartoon, drawing, blurry"
    prompt, _ = apply_styles("a cat", "", ["Sharp", "Cinematic"], styles)
    assert prompt == "cinematic still of a cat, sharp focus, 8k, film grain"


def test_unknown_style_lists_the_names() -> None:
    with pytest.raises(ParamError, match="'Noir' not found; known styles: 'Cinematic', 'Sharp', 'Empty'"):
        apply_styles("a", "", ["Noir"], parse_styles(CSV))
    with pytest.raises(ParamError, match="no styles file"):
        apply_styles("a", "", ["Noir"], {})


def test_load_styles_reads_a_file_and_names_bad_ones(tmp_path: Path) -> None:
    f = tmp_path / "styles.csv"
    f.write_text(CSV, encoding="utf-8")
    assert list(load_styles(f)) == ["Cinematic", "Sharp", "Empty"]
    with pytest.raises(OSError, match="cannot read the styles file"):
        load_styles(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("title,prompt\nx,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no 'name' column"):
        load_styles(bad)
