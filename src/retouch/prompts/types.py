"""Plain data shared by the prompt functions and their users (text encoding, networks).

These are the contract between ``retouch.prompts`` (pure text -> tokens), ``retouch.models.networks``
(embeddings and LoRA files) and the text encoder in ``retouch.models.text``. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EmbeddingRef", "Chunk", "PromptChunks", "NetworkTag"]


@dataclass(frozen=True)
class EmbeddingRef:
    """A textual-inversion embedding as the chunker sees it (spec a1111-prompts.md §4.3).

    ``ids``: the token ids of its name under the model's first tokenizer (no BOS/EOS); ``vectors``:
    how many placeholder tokens it takes in a chunk.
    """

    name: str
    ids: tuple[int, ...]
    vectors: int


@dataclass(frozen=True)
class Chunk:
    """One 77-token CLIP chunk: ``[BOS] + 75 + [EOS]`` ids, one emphasis weight per id, and the
    textual-inversion fixes ``(offset, name)``: the embedding's vectors replace the token embeddings at
    rows ``offset + 1 .. offset + vectors`` (the +1 is the BOS), spec §2.4-§2.5."""

    ids: tuple[int, ...]
    weights: tuple[float, ...]
    fixes: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class PromptChunks:
    """A prompt line's chunks and A1111's ``token_count`` (spec §2.4)."""

    chunks: tuple[Chunk, ...]
    token_count: int


@dataclass(frozen=True)
class NetworkTag:
    """One ``<kind:arg1:arg2...>`` extra-network tag (spec §5.6): the arguments split on ``:``, each
    argument with exactly one ``=`` is named, the rest positional. ``text``: the tag as written in the
    prompt (for error messages; empty when the tag was built by hand)."""

    kind: str
    positional: tuple[str, ...]
    named: dict[str, str] = field(default_factory=dict)
    text: str = ""
