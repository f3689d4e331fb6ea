"""A1111 prompt chunking: 75-token chunks, comma backtracking, empty prompts, SDXL conditioning shapes."""

from __future__ import annotations

import torch

from retouch.models.text import chunk_tokens, encode_prompts
from retouch.testing import tiny_model

BOS, EOS, COMMA = 49406, 49407, 267


def test_empty_prompt_is_one_padded_chunk() -> None:
    assert chunk_tokens([], BOS, EOS, COMMA) == [[BOS] + [EOS] * 76]


def test_short_prompt_is_wrapped_and_padded() -> None:
    (chunk,) = chunk_tokens([1, 2, 3], BOS, EOS, COMMA)
    assert chunk[:5] == [BOS, 1, 2, 3, EOS] and len(chunk) == 77 and set(chunk[4:]) == {EOS}


def test_long_prompt_splits_every_75_tokens() -> None:
    chunks = chunk_tokens(list(range(1, 161)), BOS, EOS, COMMA)
    assert len(chunks) == 3 and all(len(c) == 77 for c in chunks)
    assert chunks[0][1:76] == list(range(1, 76)) and chunks[1][1:76] == list(range(76, 151))
    assert chunks[2][1:11] == list(range(151, 161)) and chunks[2][11] == EOS


def test_chunk_breaks_after_a_late_comma() -> None:
    tokens = list(range(1, 61)) + [COMMA] + list(range(100, 130))  # comma at position 60 of 75
    chunks = chunk_tokens(tokens, BOS, EOS, COMMA)
    assert chunks[0][61] == COMMA and chunks[0][62:] == [EOS] * 15
    assert chunks[1][1:31] == list(range(100, 130))


def test_an_early_comma_does_not_move_the_break() -> None:
    tokens = list(range(1, 11)) + [COMMA] + list(range(100, 180))  # comma 65 tokens before the end
    chunks = chunk_tokens(tokens, BOS, EOS, COMMA)
    assert chunks[0][1:76] == tokens[:75]


def test_long_prompts_keep_every_token_and_batch_pads_with_empty_chunks() -> None:
    m = tiny_model(seed=0)
    tc = encode_prompts(m.text_encoders, m.tokenizers, ["cat " * 100, ""], sdxl=False)
    assert tc.context.shape == (2, 154, 32) and tc.pooled is None
    empty = encode_prompts(m.text_encoders, m.tokenizers, [""], sdxl=False).context
    assert torch.allclose(tc.context[1, :77], empty[0], atol=1e-6)
    assert torch.allclose(tc.context[1, 77:], empty[0], atol=1e-6)


def test_sdxl_concatenates_both_encoders_and_pools() -> None:
    m = tiny_model(seed=0, family="sdxl")
    tc = encode_prompts(m.text_encoders, m.tokenizers, ["a cat"], sdxl=True)
    assert tc.context.shape == (1, 77, 64) and tc.pooled is not None and tc.pooled.shape == (1, 32)
