"""The real CLIP vocabulary (bundled BPE files) behind a ``tokenize`` adapter for ``chunk_prompt``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from retouch.prompts import normalize_text

BOS, EOS, COMMA = 49406, 49407, 267


@pytest.fixture(scope="session")
def clip() -> Any:
    from retouch.models.tokenizers import clip_tokenizer

    return clip_tokenizer()


@pytest.fixture(scope="session")
def tokenize(clip: Any) -> Callable[[Sequence[str]], list[list[int]]]:
    def run(texts: Sequence[str]) -> list[list[int]]:
        cleaned = [normalize_text(t) for t in texts]
        return clip(cleaned, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]

    return run
