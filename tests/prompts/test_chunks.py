"""A1111's ``tokenize_line`` with the real CLIP vocabulary (spec §2.2, §2.4, §4.3; cases 24-32)."""

from __future__ import annotations

import pytest

from retouch.params import ParamError
from retouch.prompts import (
    EMPHASIS_MODES,
    Chunk,
    EmbeddingRef,
    PromptChunks,
    chunk_prompt,
    embedding_lookup,
    line_fragments,
)

from .conftest import BOS, COMMA, EOS

CAT, DOG, BREAK_WORD = 2368, 1929, 2568


@pytest.fixture
def chunk(tokenize):
    def run(text: str, emphasis: str = "Original", **kw) -> PromptChunks:
        return chunk_prompt(line_fragments(text, emphasis), tokenize, bos=BOS, eos=EOS, comma=COMMA, **kw)

    return run


def _padded(ids: list[int]) -> tuple[int, ...]:
    return (BOS, *ids, *[EOS] * (75 - len(ids)), EOS)


def test_every_chunk_is_77_ids_and_weights(chunk) -> None:
    out = chunk(", ".join(["(cat:1.2)"] * 60) + " BREAK dog")
    assert all(len(c.ids) == 77 and len(c.weights) == 77 for c in out.chunks)
    assert all(c.ids[0] == BOS and c.ids[-1] == EOS and c.weights[0] == c.weights[-1] == 1.0 for c in out.chunks)


def test_case_24_break_inside_brackets_is_the_word_break(chunk) -> None:
    (c,) = chunk("(a BREAK b)").chunks
    assert c.ids[:5] == (BOS, 320, BREAK_WORD, 321, EOS)
    assert c.weights[:5] == (1.0, 1.1, -1.1, 1.1, 1.0) and set(c.weights[5:]) == {1.0}


def test_case_25_weights_per_token(chunk) -> None:
    out = chunk("a (cat:1.5) [dog]")
    (c,) = out.chunks
    assert c.ids == _padded([320, CAT, DOG])
    assert c.weights[:5] == (1.0, 1.0, 1.5, 0.9090909090909091, 1.0) and out.token_count == 3


def test_case_26_fragments_are_tokenized_separately(chunk) -> None:
    assert chunk("a (b)c").chunks[0].ids[:5] == (BOS, 320, 321, 322, EOS)
    assert chunk("a bc").chunks[0].ids[:4] == (BOS, 320, 2162, EOS)


def test_case_27_break(chunk) -> None:
    out = chunk("a BREAK b")
    assert len(out.chunks) == 2 and out.token_count == 76
    assert out.chunks[0].ids == _padded([320]) and out.chunks[1].ids == _padded([321])
    out = chunk("BREAK a")
    assert len(out.chunks) == 2 and out.chunks[0].ids == (BOS, *[EOS] * 76)
    out = chunk("a BREAK")
    assert len(out.chunks) == 1 and out.token_count == 75
    out = chunk("")
    assert out == PromptChunks((Chunk(_padded([]), (1.0,) * 77),), 0)
    out = chunk("a BREAK BREAK b")
    assert len(out.chunks) == 3 and out.chunks[1].ids == _padded([])


def test_case_28_long_prompt(chunk) -> None:
    out = chunk(" ".join(["cat"] * 80))
    assert [c.ids for c in out.chunks] == [_padded([CAT] * 75), _padded([CAT] * 5)] and out.token_count == 80


def test_case_29_comma_backtrack(chunk) -> None:
    out = chunk(" ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10))
    assert [c.ids for c in out.chunks] == [_padded([CAT] * 70 + [COMMA]), _padded([DOG] * 10)]
    assert out.token_count == 85
    out = chunk(" ".join(["cat"] * 50) + ", " + " ".join(["dog"] * 30))  # comma 25 from the end: hard split
    assert [c.ids for c in out.chunks] == [_padded([CAT] * 50 + [COMMA] + [DOG] * 24), _padded([DOG] * 6)]
    assert out.token_count == 81


def test_case_29_backtrack_setting(chunk) -> None:
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    assert chunk(text, backtrack=0).chunks[0].ids == _padded([CAT] * 70 + [COMMA] + [DOG] * 4)
    assert chunk(text, backtrack=4).chunks[0].ids == _padded([CAT] * 70 + [COMMA] + [DOG] * 4)
    assert chunk(text, backtrack=5).chunks[0].ids == _padded([CAT] * 70 + [COMMA])
    for bad in (-1, 75, 2.5, True):
        with pytest.raises(ParamError, match="backtrack"):
            chunk("a", backtrack=bad)


def test_case_29_moved_tail_keeps_its_weights(chunk) -> None:
    out = chunk(" ".join(["cat"] * 70) + ", (dog:1.3) " + " ".join(["dog"] * 9))
    assert out.chunks[1].weights[1:11] == (1.3,) + (1.0,) * 9


def test_case_30_a_comma_as_76th_token_starts_the_next_chunk(chunk) -> None:
    out = chunk(", ".join(["cat"] * 40))
    assert len(out.chunks) == 2 and out.token_count == 79
    assert out.chunks[1].ids[:6] == (BOS, COMMA, CAT, COMMA, CAT, EOS)


@pytest.fixture
def myemb(tokenize) -> EmbeddingRef:
    (ids,) = tokenize(["myemb"])
    return EmbeddingRef("myemb", tuple(ids), 3)


def test_case_31_textual_inversion_matching(chunk, myemb) -> None:
    emb = embedding_lookup([myemb])
    c = chunk("a myemb b", embeddings=emb).chunks[0]
    assert c.ids[:7] == (BOS, 320, 0, 0, 0, 321, EOS) and c.fixes == ((1, "myemb"),)
    c = chunk("a (myemb:1.2), b", embeddings=emb).chunks[0]
    assert c.ids[:8] == (BOS, 320, 0, 0, 0, COMMA, 321, EOS)
    assert c.weights[:7] == (1.0, 1.0, 1.2, 1.2, 1.2, 1.0, 1.0)
    assert chunk("a MyEmb b", embeddings=emb).chunks[0].fixes == ((1, "myemb"),)  # tokens, so any case
    c = chunk("a myembs b", embeddings=emb).chunks[0]
    assert c.fixes == () and c.ids[:6] == (BOS, 320, 27551, 10370, 321, EOS)


def test_case_32_embedding_that_does_not_fit_moves_whole(chunk, myemb) -> None:
    out = chunk(" ".join(["cat"] * 73) + " myemb", embeddings=embedding_lookup([myemb]))
    first, second = out.chunks
    assert first.ids == _padded([CAT] * 73) and first.fixes == ()
    assert second.ids == _padded([0, 0, 0]) and second.fixes == ((0, "myemb"),)
    assert out.token_count == 78


def test_longest_name_wins_and_caller_order_breaks_ties(tokenize, chunk) -> None:
    (cat,), (cat_dog,) = [tuple(i) for i in tokenize(["cat"])], [tuple(i) for i in tokenize(["cat dog"])]
    short, long_ = EmbeddingRef("cat", cat, 1), EmbeddingRef("cat dog", cat_dog, 2)
    for table in ({CAT: [short, long_]}, embedding_lookup([short, long_])):
        c = chunk("cat dog cat", embeddings=table).chunks[0]
        assert c.fixes == ((0, "cat dog"), (2, "cat")) and c.ids[:5] == (BOS, 0, 0, 0, EOS)
    twin = EmbeddingRef("Cat", cat, 4)
    assert chunk("cat", embeddings=embedding_lookup([twin, short])).chunks[0].fixes == ((0, "Cat"),)
    assert embedding_lookup([EmbeddingRef("empty", (), 1)]) == {}


def test_the_name_must_lie_inside_one_fragment(chunk, tokenize) -> None:
    ref = EmbeddingRef("cat dog", tuple(tokenize(["cat dog"])[0]), 2)
    assert chunk("cat (dog)", embeddings=embedding_lookup([ref])).chunks[0].fixes == ()


def test_a_moved_tail_takes_its_embedding_fix_along(chunk, myemb) -> None:
    # Deliberate difference (chunks.py docstring): A1111 leaves the fix in the first chunk.
    out = chunk(" ".join(["cat"] * 60) + ", myemb " + " ".join(["dog"] * 12), embeddings=embedding_lookup([myemb]))
    first, second = out.chunks
    assert first.ids == _padded([CAT] * 60 + [COMMA]) and first.fixes == ()
    assert second.ids[1:4] == (0, 0, 0) and second.fixes == ((0, "myemb"),)


def test_embedding_wider_than_a_chunk_is_refused(chunk, myemb) -> None:
    wide = EmbeddingRef("myemb", myemb.ids, 76)
    with pytest.raises(ParamError, match="76 vectors"):
        chunk("a myemb", embeddings=embedding_lookup([wide]))
    assert chunk("a cat", embeddings=embedding_lookup([wide])).token_count == 2  # only when used


def test_one_tokenize_call_for_all_fragments(tokenize) -> None:
    calls: list[list[str]] = []

    def counting(texts):
        calls.append(list(texts))
        return tokenize(texts)

    chunk_prompt(line_fragments("a (b) BREAK [c]", "Original"), counting, bos=BOS, eos=EOS, comma=COMMA)
    assert calls == [["a ", "b", "", "", "c"]]  # the BREAK marker is not tokenized
    chunk_prompt([("BREAK", -1.0)], counting, bos=BOS, eos=EOS, comma=COMMA)  # nothing to tokenize
    assert len(calls) == 1


def test_emphasis_modes(chunk) -> None:
    assert EMPHASIS_MODES == ("Original", "No norm", "Ignore", "None")
    for mode in ("Original", "No norm", "Ignore"):
        assert line_fragments("a (b:1.2) BREAK c", mode) == [("a ", 1.0), ("b", 1.2), ("", 1.0), ("BREAK", -1.0), ("c", 1.0)]
    assert line_fragments("a (b:1.2) BREAK c", "None") == [("a (b:1.2) BREAK c", 1.0)]
    out = chunk("a (b) BREAK c", "None")  # brackets and BREAK tokenized literally
    assert len(out.chunks) == 1 and BREAK_WORD in out.chunks[0].ids and set(out.chunks[0].weights) == {1.0}
    with pytest.raises(ParamError, match="'Original', 'No norm', 'Ignore', 'None'"):
        line_fragments("a", "original")
