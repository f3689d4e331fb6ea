"""Prompt -> text conditioning, with A1111's 75-token chunking (SD1, SD2 and SDXL's two encoders).

A1111 splits a prompt's tokens into chunks of 75, each wrapped as ``[BOS] + 75 tokens + [EOS]`` and
padded, encodes every chunk separately and concatenates the results along the token axis, so prompts
longer than CLIP's 77 tokens keep all their words. A chunk that would cut a phrase breaks after the
last comma when that comma is within 20 tokens of the end (option ``comma_padding_backtrack``). An
empty prompt is one chunk of ``[BOS, EOS, pad...]``. Prompts in one batch with different chunk counts
get empty chunks appended. Emphasis syntax ``(word:1.2)`` is not parsed: text is taken literally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["TextConditioning", "chunk_tokens", "encode_prompts", "CHUNK_LENGTH"]

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20


@dataclass(frozen=True)
class TextConditioning:
    """Encoded prompts: ``context`` (B, 77·chunks, D) and, for SDXL, ``pooled`` (B, P)."""

    context: Tensor
    pooled: Tensor | None = None


def chunk_tokens(tokens: Sequence[int], bos: int, eos: int, comma: int) -> list[list[int]]:
    """Split token ids (no special tokens) into A1111's 77-id chunks ``[BOS] + 75 + [EOS]``.

    Padding uses ``eos`` (OpenCLIP's pad id 0 is applied after the first EOS by the caller).
    """
    chunks: list[list[int]] = []
    current: list[int] = []
    last_comma = -1

    def close(part: list[int]) -> None:
        nonlocal last_comma
        chunks.append([bos, *part, *([eos] * (CHUNK_LENGTH - len(part))), eos])
        last_comma = -1

    for token in tokens:
        if token == comma:
            last_comma = len(current)
        elif len(current) == CHUNK_LENGTH and last_comma != -1 and CHUNK_LENGTH - last_comma <= COMMA_BACKTRACK:
            moved = current[last_comma + 1 :]
            close(current[: last_comma + 1])
            current = moved
        if len(current) == CHUNK_LENGTH:
            close(current)
            current = []
        current.append(token)
    if current or not chunks:
        close(current)
    return chunks


def _tokenize(tokenizer: Any, prompts: Sequence[str]) -> list[list[list[int]]]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    ids = tokenizer(list(prompts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    per_prompt = [chunk_tokens(t, bos, eos, comma) for t in ids]
    n = max(len(c) for c in per_prompt)
    empty = chunk_tokens([], bos, eos, comma)[0]
    return [c + [empty] * (n - len(c)) for c in per_prompt]


def _pad_after_eos(ids: Tensor, eos: int, pad: int) -> Tensor:
    """OpenCLIP pads with id 0 after the first EOS; OpenAI CLIP pads with EOS (A1111 id_pad)."""
    if pad == eos:
        return ids
    out = ids.clone()
    for row in out:
        first = int((row == eos).nonzero()[0])
        row[first + 1 :] = pad
    return out


def _encode_chunk(encoder: Any, ids: Tensor, layer: int | None) -> tuple[Tensor, Tensor | None]:
    """Hidden states of one chunk batch. ``layer=None`` means the final layer with final layer norm;
    an int ``-k`` takes hidden_states[-k] (with final norm for SD1/SD2 clip skip, raw for SDXL)."""
    out = encoder(input_ids=ids, output_hidden_states=layer is not None)
    pooled = getattr(out, "text_embeds", None)
    if layer is None:
        return out.last_hidden_state, pooled
    return out.hidden_states[layer], pooled


@torch.inference_mode()
def encode_prompts(
    encoders: Sequence[Any], tokenizers: Sequence[Any], prompts: Sequence[str], *, sdxl: bool, clip_skip: int = 1
) -> TextConditioning:
    """Encode ``prompts`` for the model's encoder(s) (spec §1, "text conditionings").

    SD1/SD2: final layer (final layer norm applied); clip skip k>1 takes hidden_states[-k] then the
    final layer norm. SDXL: both encoders' penultimate hidden states concatenated on the feature axis
    (768 + 1280 = 2048 at full size), pooled embedding from encoder 2's projection of the first chunk.
    """
    contexts: list[Tensor] = []
    pooled: Tensor | None = None
    for k, (encoder, tokenizer) in enumerate(zip(encoders, tokenizers, strict=True)):
        device = next(encoder.parameters()).device
        chunks = _tokenize(tokenizer, prompts)
        outs = []
        for c in range(len(chunks[0])):
            ids = torch.tensor([p[c] for p in chunks], dtype=torch.long)
            ids = _pad_after_eos(ids, tokenizer.eos_token_id, tokenizer.pad_token_id).to(device)
            layer = -(clip_skip + 1) if sdxl else (None if clip_skip == 1 else -clip_skip)
            z, p = _encode_chunk(encoder, ids, layer)
            if layer is not None and not sdxl:
                z = getattr(encoder, "text_model", encoder).final_layer_norm(z)
            if c == 0 and k == 1:
                pooled = p
            outs.append(z)
        contexts.append(torch.cat(outs, dim=1))
    return TextConditioning(torch.cat(contexts, dim=-1), pooled)
