"""The text clean-up A1111's tokenizers apply before BPE (spec a1111-prompts.md §2.3, §6).

A1111's HF CLIP tokenizer (slow, with ftfy installed) runs ``ftfy.fix_text``, collapses whitespace and
strips; open_clip's (SD2, SDXL's second encoder) also unescapes HTML twice. transformers 5's
``CLIPTokenizer`` has neither, so curly quotes, full-width letters, ligatures and HTML entities
tokenize differently there. Apply this to each text before the tokenizer (lower-casing is left to the
tokenizer, which does it). ftfy is imported on first use.
"""

from __future__ import annotations

import html
import re

__all__ = ["normalize_text"]

_SPACES = re.compile(r"\s+")


def normalize_text(text: str, *, open_clip: bool = False) -> str:
    """``ftfy.fix_text`` (+ ``html.unescape`` twice for OpenCLIP), whitespace runs to one space, stripped."""
    import ftfy

    text = ftfy.fix_text(text)
    if open_clip:
        text = html.unescape(html.unescape(text))
    return _SPACES.sub(" ", text).strip()
