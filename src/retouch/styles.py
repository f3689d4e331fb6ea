"""A1111 prompt styles: ``styles.csv`` read and applied as A1111's ``modules/styles.py`` (v1.10.1) does.

File format: CSV with a header row, read as UTF-8 (a BOM is allowed), spaces after commas skipped;
columns ``name``, ``prompt`` (the old format's ``text`` also works) and ``negative_prompt`` (optional);
rows whose name starts with ``#`` are comments. A later row with the same name replaces an earlier one.

Applying (``merge_prompts``): for each selected style in order, if its prompt contains ``{prompt}``
that placeholder is replaced by the prompt so far; otherwise the stripped prompt and the stripped style
prompt are joined with ", ", leaving out whichever is empty. The negative prompt is built the same way
from the styles' negative prompts. Difference from A1111 on purpose: an unknown style name is an error
listing the known names (A1111 silently applies an empty style).

Pure except :func:`load_styles`, which reads the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from retouch.params import ParamError

__all__ = ["PromptStyle", "parse_styles", "load_styles", "merge_prompts", "apply_styles"]


@dataclass(frozen=True)
class PromptStyle:
    """One saved style: its name and the texts it adds to the prompt and the negative prompt."""

    name: str
    prompt: str
    negative_prompt: str


def parse_styles(text: str) -> Mapping[str, PromptStyle]:
    """Styles from the text of an A1111 ``styles.csv``, by name, in file order."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""), skipinitialspace=True)
    if reader.fieldnames is not None and "name" not in reader.fieldnames:
        raise ValueError(f"styles file has no 'name' column; its columns are {', '.join(reader.fieldnames)}")
    styles: dict[str, PromptStyle] = {}
    for row in reader:
        name = row.get("name") or ""
        if not row or name.startswith("#"):
            continue
        prompt = row.get("prompt", row.get("text")) or ""
        styles[name] = PromptStyle(name, prompt, row.get("negative_prompt") or "")
    return MappingProxyType(styles)


def load_styles(path: str | Path) -> Mapping[str, PromptStyle]:
    """Read ``path`` (A1111's styles.csv format); OSError or ValueError naming the file when it cannot."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise OSError(f"cannot read the styles file {path}: {e.strerror or e}") from None
    try:
        return parse_styles(text)
    except (ValueError, csv.Error) as e:
        raise ValueError(f"styles file {path}: {e}") from None


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """One style applied to a prompt (A1111 ``merge_prompts``, module docstring)."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles(
    prompt: str, negative_prompt: str, names: Sequence[str], styles: Mapping[str, PromptStyle]
) -> tuple[str, str]:
    """``(prompt, negative_prompt)`` with the styles ``names`` applied in order; ParamError for an
    unknown name, listing the known ones."""
    unknown = [n for n in names if n not in styles]
    if unknown:
        known = ", ".join(repr(n) for n in styles) or "none (no styles file was given)"
        raise ParamError(f"styles {', '.join(repr(n) for n in unknown)} not found; known styles: {known}")
    for name in names:
        prompt = merge_prompts(styles[name].prompt, prompt)
        negative_prompt = merge_prompts(styles[name].negative_prompt, negative_prompt)
    return prompt, negative_prompt
