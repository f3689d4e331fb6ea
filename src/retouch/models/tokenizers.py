"""Offline CLIP tokenizers built from the bundled BPE files (no hub access)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

CONFIG_ROOT = Path(__file__).parent / "configs"


@cache
def _clip_bpe() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    folder = CONFIG_ROOT / "clip"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    merges = tuple(tuple(line.split()) for line in lines if line)
    return vocab, merges  # type: ignore[return-value]


def clip_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """OpenAI CLIP's tokenizer (SD1, SDXL encoder 1); ``pad_token="!"`` gives OpenCLIP's (SD2, SDXL 2).

    OpenCLIP pads with id 0 (``!``) where OpenAI CLIP pads with ``<|endoftext|>``; both share the BPE.
    """
    from transformers import CLIPTokenizer

    vocab, merges = _clip_bpe()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=77, pad_token=pad_token)  # type: ignore[arg-type]
