"""Prompt text -> text conditioning as A1111 computes it (spec a1111-prompts.md §2).

Each text is normalised as A1111's tokenizers do (ftfy; OpenCLIP also unescapes HTML), split into
emphasis fragments (``retouch.prompts.line_fragments``) and cut into 77-id chunks with A1111's BREAK,
comma back-tracking and textual-inversion placement (``retouch.prompts.chunk_prompt``). All texts of
one call are encoded together, chunk index by chunk index, because A1111's emphasis restores the mean
over that whole batch (§2.6). Shorter texts get empty chunks ``[BOS, EOS...]``.

Which hidden state each family uses (§2.5): SD1 the final layer with the final layer norm, or
``hidden_states[-N]`` plus the final norm for clip skip N; SD2 the penultimate layer plus final norm
(our HF SD2 encoder has its last layer removed, so that is its final output), clip skip ignored as
in A1111; SDXL ``hidden_states[-2]`` of both encoders without final norm, clip skip ignored, pooled
embedding from encoder 2's projection of chunk 0.

The transformer is run from its own submodules (embeddings -> causal mask -> layers -> final norm)
instead of ``CLIPTextModel.forward`` because textual-inversion vectors replace token embeddings
before the position embeddings are added, and the model's forward only accepts token ids; this also
lets clip skip stop early. A test checks the result equals the model's own forward bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from retouch.prompts import CHUNK_LENGTH, EmbeddingRef, chunk_prompt, line_fragments, normalize_text
from retouch.prompts.types import Chunk, PromptChunks

__all__ = ["TextConditioning", "EmbeddingSource", "EncodedTexts", "encode_texts", "encoder_layers"]


class EmbeddingSource(Protocol):
    """Textual-inversion embeddings as the text encoder needs them (``retouch.models.networks``)."""

    def lookup(self) -> Mapping[int, Sequence[EmbeddingRef]]: ...

    def splice(self, token_embeddings: Tensor, fixes: Sequence[Sequence[tuple[int, str]]], encoder_index: int) -> Tensor: ...


@dataclass(frozen=True)
class TextConditioning:
    """Encoded prompts: ``context`` (B, 77·chunks, D) and, for SDXL, ``pooled`` (B, P)."""

    context: Tensor
    pooled: Tensor | None = None


@dataclass(frozen=True)
class EncodedTexts:
    """Encoder output plus what A1111 reports about it: the embeddings used, in order of first use."""

    cond: TextConditioning
    embeddings_used: tuple[str, ...] = ()
    token_counts: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Reading:
    """How A1111 reads one encoder: pad id after EOS, which layer, whether the final norm applies."""

    open_clip: bool
    layer: int | None  # None: the last layer; -k: hidden_states[-k]
    final_norm: bool


def encoder_layers(base: str, clip_skip: int) -> tuple[_Reading, ...]:
    """A1111's hidden-state choice per encoder of a family base ("sd1", "sd2", "sdxl"), spec §2.5."""
    if base == "sd1":
        return (_Reading(False, None if clip_skip == 1 else -clip_skip, True),)
    if base == "sd2":
        return (_Reading(True, None, True),)
    if base == "sdxl":
        return (_Reading(False, -2, False), _Reading(True, -2, False))
    raise ValueError(f"unknown model base {base!r}; expected sd1, sd2 or sdxl")


def _tokenize_fn(tokenizer: Any, open_clip: bool) -> Any:
    def tokenize(texts: Sequence[str]) -> list[list[int]]:
        clean = [normalize_text(t, open_clip=open_clip) for t in texts]
        if not clean:
            return []
        return list(tokenizer(clean, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    return tokenize


def _chunk_lines(
    tokenizer: Any, reading: _Reading, texts: Sequence[str], emphasis: str, backtrack: int,
    lookup: Mapping[int, Sequence[EmbeddingRef]] | None,
) -> list[PromptChunks]:
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    tokenize = _tokenize_fn(tokenizer, reading.open_clip)
    return [
        chunk_prompt(line_fragments(text, emphasis), tokenize, bos=tokenizer.bos_token_id,
                     eos=tokenizer.eos_token_id, comma=comma, backtrack=backtrack, embeddings=lookup)
        for text in texts
    ]


def _empty_chunk(tokenizer: Any) -> Chunk:
    ids = (tokenizer.bos_token_id,) + (tokenizer.eos_token_id,) * (CHUNK_LENGTH + 1)
    return Chunk(ids, (1.0,) * len(ids))


def _ids(chunks: Sequence[Chunk], tokenizer: Any, open_clip: bool, device: torch.device) -> Tensor:
    """(B, 77) ids; OpenCLIP sets every id after the first EOS to 0 (A1111 ``id_pad``), spec §2.5."""
    ids = torch.tensor([c.ids for c in chunks], dtype=torch.long)
    if open_clip:
        is_eos = ids == tokenizer.eos_token_id
        seen = is_eos.long().cumsum(dim=1)
        ids = ids.masked_fill((seen > 1) | ((seen == 1) & ~is_eos), 0)
    return ids.to(device)


def _token_embeddings(
    text_model: Any, ids: Tensor, chunks: Sequence[Chunk], embeddings: EmbeddingSource | None, encoder_index: int
) -> Tensor:
    """Token embeddings with textual-inversion vectors at rows ``offset+1 ..`` (A1111 EmbeddingsWithFixes)."""
    emb = text_model.embeddings.token_embedding(ids)
    if embeddings is None or not any(c.fixes for c in chunks):
        return emb
    return embeddings.splice(emb, [c.fixes for c in chunks], encoder_index)


def _run_transformer(text_model: Any, emb: Tensor, reading: _Reading, pooled_ids: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The CLIP text transformer from its submodules (see the module docstring); pooled from the last layer."""
    from transformers.masking_utils import create_causal_mask

    hidden = text_model.embeddings(inputs_embeds=emb)
    mask = create_causal_mask(config=text_model.config, inputs_embeds=hidden, attention_mask=None, past_key_values=None)
    layers = list(text_model.encoder.layers)
    index = len(layers) if reading.layer is None else len(layers) + 1 + reading.layer  # into hidden_states
    states = [hidden]
    for layer in layers[: len(layers) if pooled_ids is not None else index]:
        hidden = layer(hidden, mask, is_causal=True)
        states.append(hidden)
    z = states[index]
    if reading.final_norm:
        z = text_model.final_layer_norm(z)
    pooled = None
    if pooled_ids is not None:
        last = text_model.final_layer_norm(states[-1])
        pooled = last[torch.arange(last.shape[0], device=last.device), pooled_ids]
    return z, pooled


def _apply_emphasis(z: Tensor, chunks: Sequence[Chunk], emphasis: str) -> Tensor:
    """A1111's emphasis after the transformer (spec §2.6): weights, then the batch-wide mean restored."""
    if emphasis not in ("Original", "No norm") or all(w == 1.0 for c in chunks for w in c.weights):
        return z  # all-ones weights: A1111's result is z exactly (z·1, ratio m0/m0 = 1), so skip the work
    w = torch.tensor([c.weights for c in chunks], dtype=torch.float32, device=z.device)
    if emphasis == "No norm":
        return z * w[..., None]
    mean = z.mean()
    weighted = z * w[..., None]
    return weighted * (mean / weighted.mean())


@torch.inference_mode()
def encode_texts(
    encoders: Sequence[Any], tokenizers: Sequence[Any], texts: Sequence[str], *, base: str, clip_skip: int = 1,
    emphasis: str = "Original", embeddings: EmbeddingSource | None = None, backtrack: int = 20,
) -> EncodedTexts:
    """Encode ``texts`` together for a model of family ``base`` (module docstring; spec §2)."""
    readings = encoder_layers(base, clip_skip)
    lookup = embeddings.lookup() if embeddings is not None else None
    lines = [_chunk_lines(tok, r, texts, emphasis, backtrack, lookup) for tok, r in zip(tokenizers, readings, strict=True)]
    n = max(len(line.chunks) for per_encoder in lines for line in per_encoder)
    contexts: list[Tensor] = []
    pooled: Tensor | None = None
    for k, (encoder, tokenizer, reading) in enumerate(zip(encoders, tokenizers, readings, strict=True)):
        text_model = getattr(encoder, "text_model", encoder)
        device = next(encoder.parameters()).device
        empty = _empty_chunk(tokenizer)
        want_pooled = base == "sdxl" and k == 1
        outs = []
        for c in range(n):
            chunks = [line.chunks[c] if c < len(line.chunks) else empty for line in lines[k]]
            ids = _ids(chunks, tokenizer, reading.open_clip, device)
            emb = _token_embeddings(text_model, ids, chunks, embeddings, k)
            eos_at = (ids == tokenizer.eos_token_id).int().argmax(dim=1) if want_pooled and c == 0 else None
            z, p = _run_transformer(text_model, emb, reading, eos_at)
            if p is not None:
                pooled = encoder.text_projection(p)
            outs.append(_apply_emphasis(z, chunks, emphasis))
        contexts.append(torch.cat(outs, dim=1))
    used = dict.fromkeys(name for line in lines[0] for chunk in line.chunks for _, name in chunk.fixes)
    counts = tuple(line.token_count for line in lines[0])
    return EncodedTexts(TextConditioning(torch.cat(contexts, dim=-1), pooled), tuple(used), counts)
