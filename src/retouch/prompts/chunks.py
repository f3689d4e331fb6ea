"""A prompt line as CLIP chunks: A1111's ``tokenize_line`` (spec a1111-prompts.md §2.2, §2.4, §4.3).

Each emphasis fragment is tokenized on its own (so token boundaries fall at weight changes:
``a (b)c`` is ``a``, ``b``, ``c``), in one batched ``tokenize`` call. Tokens fill chunks of 75; a
chunk is closed as ``[BOS] + tokens + EOS padding to 75 + [EOS]``, every id with its weight (1.0 for
BOS, EOS and padding). Rules, in A1111's order, for each token:

1. a comma remembers its position in the chunk;
2. otherwise, when the chunk is full and the last comma is at most ``backtrack`` tokens from its end,
   the chunk is cut after the comma and the tail starts the next chunk;
3. a full chunk is closed;
4. a textual-inversion name starting here (longest name first) puts its ``vectors`` placeholder ids
   ``0`` with the fragment's weight, in the next chunk if they do not fit, and records the fix
   ``(offset, name)``; else the token goes in.

The BREAK marker (text ``BREAK``, weight exactly -1) closes the chunk, even an empty one. At the end the
chunk is closed if it has tokens or no chunk exists. ``token_count`` adds 75 per closed chunk and the
real length of the last one.

Deliberate difference from A1111: when step 2 moves a tail that holds a textual-inversion placeholder,
the fix moves with it (offset re-based). A1111 leaves the fix in the earlier chunk, where its vectors
overwrite that chunk's EOS padding while the moved placeholders encode as token 0. An embedding with
more than 75 vectors, which A1111 lets overflow a chunk, raises :class:`ParamError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from retouch.params import EMPHASIS_MODES, ParamError
from retouch.prompts.attention import is_break, parse_attention
from retouch.prompts.types import Chunk, EmbeddingRef, PromptChunks

__all__ = ["chunk_prompt", "line_fragments", "embedding_lookup", "EMPHASIS_MODES", "CHUNK_LENGTH"]

CHUNK_LENGTH = 75


def line_fragments(text: str, emphasis: str) -> list[tuple[str, float]]:
    """The fragments ``chunk_prompt`` takes for one schedule text under emphasis mode ``emphasis``.

    ``Original``, ``No norm`` and ``Ignore`` parse emphasis and BREAK (:func:`parse_attention`; ``Ignore``
    discards the weights only after encoding); ``None`` takes the line literally as one fragment of
    weight 1. A1111 silently treats an unknown name as ``Original``; this raises :class:`ParamError`.
    """
    if emphasis not in EMPHASIS_MODES:
        raise ParamError(f"emphasis must be one of {', '.join(map(repr, EMPHASIS_MODES))}, got {emphasis!r}")
    if emphasis == "None":
        return [(text, 1.0)]
    return parse_attention(text)


def embedding_lookup(refs: Iterable[EmbeddingRef]) -> dict[int, tuple[EmbeddingRef, ...]]:
    """``{first token id: refs}`` for ``chunk_prompt``, longest name first (ties keep the given order, as
    A1111's registration order). Refs whose name tokenizes to nothing cannot match and are left out."""
    table: dict[int, list[EmbeddingRef]] = {}
    for ref in refs:
        if ref.ids:
            table.setdefault(ref.ids[0], []).append(ref)
    return {k: tuple(sorted(v, key=lambda r: len(r.ids), reverse=True)) for k, v in table.items()}


def chunk_prompt(
    fragments: Sequence[tuple[str, float]],
    tokenize: Callable[[Sequence[str]], list[list[int]]],
    *,
    bos: int,
    eos: int,
    comma: int,
    backtrack: int = 20,
    embeddings: Mapping[int, Sequence[EmbeddingRef]] | None = None,
) -> PromptChunks:
    """A1111's ``tokenize_line`` over ``fragments`` (from :func:`line_fragments`).

    ``tokenize`` maps texts to token ids without BOS/EOS (apply ``normalize_text`` in it). ``eos`` pads
    (OpenCLIP's pad id 0 after the first EOS is the encoder's business, spec §2.5). ``backtrack``:
    A1111's ``comma_padding_backtrack`` (0-74, 0 = off). ``embeddings``: first token id of each
    textual-inversion name -> its refs; they are tried longest name first (this function stable-sorts
    them, so :func:`embedding_lookup`'s order or any other works).
    """
    if isinstance(backtrack, bool) or not isinstance(backtrack, int) or not 0 <= backtrack < CHUNK_LENGTH:
        raise ParamError(f"comma backtrack must be an integer 0-{CHUNK_LENGTH - 1}, got {backtrack!r}")
    lookup = {k: sorted(v, key=lambda r: len(r.ids), reverse=True) for k, v in (embeddings or {}).items()}

    texts = [text for text, weight in fragments if not is_break(text, weight)]
    token_lists = tokenize(texts) if texts else []
    if len(token_lists) != len(texts):
        raise ValueError(f"tokenize returned {len(token_lists)} token lists for {len(texts)} texts")
    tokenized = iter(token_lists)

    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    fixes: list[tuple[int, str]] = []
    token_count = 0
    last_comma = -1

    def close(is_last: bool = False) -> None:
        nonlocal ids, weights, fixes, token_count, last_comma
        token_count += len(ids) if is_last else CHUNK_LENGTH
        pad = CHUNK_LENGTH - len(ids)
        chunks.append(
            Chunk(
                ids=(bos, *ids, *([eos] * pad), eos),
                weights=(1.0, *weights, *([1.0] * pad), 1.0),
                fixes=tuple(fixes),
            )
        )
        ids, weights, fixes, last_comma = [], [], [], -1

    for text, weight in fragments:
        if is_break(text, weight):
            close()
            continue
        tokens = list(next(tokenized))
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(ids)
            elif backtrack and len(ids) == CHUNK_LENGTH and last_comma != -1 and CHUNK_LENGTH - last_comma <= backtrack:
                cut = last_comma + 1
                tail = ids[cut:], weights[cut:], [(o - cut, n) for o, n in fixes if o >= cut]
                ids, weights, fixes = ids[:cut], weights[:cut], [(o, n) for o, n in fixes if o < cut]
                close()
                ids, weights, fixes = tail
            if len(ids) == CHUNK_LENGTH:
                close()
            found = _match(lookup, tokens, position)
            if found is None:
                ids.append(token)
                weights.append(weight)
                position += 1
                continue
            if found.vectors > CHUNK_LENGTH:
                raise ParamError(
                    f"embedding {found.name!r} has {found.vectors} vectors; at most {CHUNK_LENGTH} fit in a chunk"
                )
            if len(ids) + found.vectors > CHUNK_LENGTH:
                close()
            fixes.append((len(ids), found.name))
            ids += [0] * found.vectors
            weights += [weight] * found.vectors
            position += len(found.ids)

    if ids or not chunks:
        close(is_last=True)
    return PromptChunks(tuple(chunks), token_count)


def _match(lookup: Mapping[int, Sequence[EmbeddingRef]], tokens: Sequence[int], position: int) -> EmbeddingRef | None:
    for ref in lookup.get(tokens[position], ()):
        if tuple(tokens[position : position + len(ref.ids)]) == tuple(ref.ids):
            return ref
    return None
