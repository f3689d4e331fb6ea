"""Text encoding as A1111 does it: hidden-state choice per family, emphasis maths, TI vectors, chunks.

Expected values are computed in the tests from the model's own tokenizer and encoder with the
formulas of spec a1111-prompts.md §2.5-§2.6 (A1111's ``FrozenCLIPEmbedderWithCustomWords`` and
``EmphasisOriginal``), never from the code under test.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from retouch.models.text import encode_texts
from retouch.testing import tiny_model

BOS, EOS = 49406, 49407


def _ids(tokenizer, text: str, pad: int = EOS) -> Tensor:
    body = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = [BOS, *body, EOS]
    return torch.tensor([ids + [pad] * (77 - len(ids))])


def _hf(encoder, ids: Tensor):
    with torch.inference_mode():
        return encoder(input_ids=ids, output_hidden_states=True)


def test_sd1_is_the_model_forward_bit_for_bit() -> None:
    """SD1, clip skip 1: A1111 uses ``last_hidden_state`` of [BOS, tokens, EOS, EOS-padding]."""
    m = tiny_model(seed=0)
    enc, tok = m.text_encoders[0], m.tokenizers[0]
    got = encode_texts(m.text_encoders, m.tokenizers, ["a photo of a cat"], base="sd1").cond
    assert torch.equal(got.context, _hf(enc, _ids(tok, "a photo of a cat")).last_hidden_state)
    assert got.pooled is None


def test_sd1_clip_skip_takes_hidden_states_minus_n_then_final_norm() -> None:
    """Clip skip N on SD1: ``final_layer_norm(hidden_states[-N])`` (A1111 encode_with_transformers)."""
    m = tiny_model(seed=0)
    enc, tok = m.text_encoders[0], m.tokenizers[0]
    got = encode_texts(m.text_encoders, m.tokenizers, ["a cat"], base="sd1", clip_skip=2).cond.context
    with torch.inference_mode():
        want = enc.final_layer_norm(_hf(enc, _ids(tok, "a cat")).hidden_states[-2])
    assert torch.equal(got, want)


def test_sd2_ignores_clip_skip_and_pads_with_zero_after_eos() -> None:
    """SD2: A1111 ignores clip skip (only a TODO), and OpenCLIP's pad id 0 follows the first EOS."""
    m = tiny_model(seed=0, family="sd2")
    enc, tok = m.text_encoders[0], m.tokenizers[0]
    one = encode_texts(m.text_encoders, m.tokenizers, ["a cat"], base="sd2").cond.context
    two = encode_texts(m.text_encoders, m.tokenizers, ["a cat"], base="sd2", clip_skip=3).cond.context
    assert torch.equal(one, two)
    assert torch.equal(one, _hf(enc, _ids(tok, "a cat", pad=0)).last_hidden_state)


def test_sdxl_uses_penultimate_of_both_encoders_and_pools_chunk_zero() -> None:
    """SDXL: concat(hidden_states[-2] of each encoder, no final norm); pooled = encoder 2 text_embeds."""
    m = tiny_model(seed=0, family="sdxl")
    e1, e2 = m.text_encoders
    t1, t2 = m.tokenizers
    got = encode_texts(m.text_encoders, m.tokenizers, ["a cat"], base="sdxl", clip_skip=2).cond
    r1, r2 = _hf(e1, _ids(t1, "a cat")), _hf(e2, _ids(t2, "a cat", pad=0))
    assert torch.equal(got.context, torch.cat([r1.hidden_states[-2], r2.hidden_states[-2]], dim=-1))
    assert got.pooled is not None and torch.equal(got.pooled, r2.text_embeds)


def _weights(n: int, at: dict[int, float]) -> Tensor:
    w = torch.ones(1, n)
    for i, v in at.items():
        w[0, i] = v
    return w


def test_emphasis_original_weights_then_restores_the_mean() -> None:
    """Case 25 + §2.6: ``a (cat:1.5) [dog]`` -> weights 1.5 on cat, 1/1.1 on dog; z·w·mean(z)/mean(z·w)."""
    m = tiny_model(seed=0)
    enc, tok = m.text_encoders[0], m.tokenizers[0]
    got = encode_texts(m.text_encoders, m.tokenizers, ["a (cat:1.5) [dog]"], base="sd1").cond.context
    z = _hf(enc, _ids(tok, "a cat dog")).last_hidden_state
    w = _weights(77, {2: 1.5, 3: 1 / 1.1})[..., None]
    want = (z * w) * (z.mean() / (z * w).mean())
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    nonorm = encode_texts(m.text_encoders, m.tokenizers, ["a (cat:1.5) [dog]"], base="sd1", emphasis="No norm")
    assert torch.allclose(nonorm.cond.context, z * w, rtol=0, atol=1e-6)
    for mode in ("Ignore",):
        plain = encode_texts(m.text_encoders, m.tokenizers, ["a (cat:1.5) [dog]"], base="sd1", emphasis=mode)
        assert torch.equal(plain.cond.context, z)


def test_emphasis_none_tokenizes_brackets_literally() -> None:
    """Mode "None": no parsing, so the brackets and ``:1.5`` are tokens of their own (§2.2)."""
    m = tiny_model(seed=0)
    enc, tok = m.text_encoders[0], m.tokenizers[0]
    got = encode_texts(m.text_encoders, m.tokenizers, ["a (cat:1.5)"], base="sd1", emphasis="None").cond.context
    assert torch.equal(got, _hf(enc, _ids(tok, "a (cat:1.5)")).last_hidden_state)


def test_emphasis_mean_is_shared_by_the_texts_encoded_together() -> None:
    """Case 34: the schedule texts of one prompt are one emphasis batch; a plain text there is rescaled."""
    m = tiny_model(seed=0)
    enc, tok = m.text_encoders[0], m.tokenizers[0]
    got = encode_texts(m.text_encoders, m.tokenizers, ["(cat:1.5)", "dog"], base="sd1").cond.context
    z = torch.cat([_hf(enc, _ids(tok, "cat")).last_hidden_state, _hf(enc, _ids(tok, "dog")).last_hidden_state])
    w = torch.ones(2, 77, 1)
    w[0, 1] = 1.5
    want = (z * w) * (z.mean() / (z * w).mean())
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(got[1], z[1], atol=1e-6)


def test_textual_inversion_vectors_replace_the_token_embeddings(tmp_path) -> None:
    """§2.5: a one-vector embedding equal to the token embedding of "dog" encodes exactly like "dog"."""
    from safetensors.torch import save_file

    from retouch.models.networks.embeddings import EmbeddingDatabase

    m = tiny_model(seed=0)
    enc, tok = m.text_encoders[0], m.tokenizers[0]
    dog = enc.embeddings.token_embedding.weight[tok("dog", add_special_tokens=False)["input_ids"][0]][None].detach()
    save_file({"emb_params": dog.clone().contiguous()}, str(tmp_path / "zzzemb.safetensors"))
    db = EmbeddingDatabase.for_bundle(tmp_path, m)
    got = encode_texts(m.text_encoders, m.tokenizers, ["a zzzemb b"], base="sd1", embeddings=db)
    want = encode_texts(m.text_encoders, m.tokenizers, ["a dog b"], base="sd1")
    assert torch.equal(got.cond.context, want.cond.context)
    assert got.embeddings_used == ("zzzemb",)


def test_long_prompts_keep_every_token_and_short_texts_get_empty_chunks() -> None:
    """§2.5: K = max chunks over the texts; a shorter text's extra chunk is the encoded empty chunk."""
    m = tiny_model(seed=0)
    got = encode_texts(m.text_encoders, m.tokenizers, ["cat " * 100, ""], base="sd1")
    assert got.cond.context.shape == (2, 154, 32) and got.token_counts == (100, 0)
    empty = encode_texts(m.text_encoders, m.tokenizers, [""], base="sd1").cond.context
    assert torch.equal(got.cond.context[1, 77:], empty[0])


def test_break_starts_a_new_chunk() -> None:
    """Case 27: ``a BREAK b`` is two chunks: [BOS a EOS...] and [BOS b EOS...]."""
    m = tiny_model(seed=0)
    enc, tok = m.text_encoders[0], m.tokenizers[0]
    got = encode_texts(m.text_encoders, m.tokenizers, ["a BREAK b"], base="sd1").cond.context
    want = torch.cat([_hf(enc, _ids(tok, "a")).last_hidden_state, _hf(enc, _ids(tok, "b")).last_hidden_state], dim=1)
    assert torch.equal(got, want)


def test_unknown_base_is_refused() -> None:
    m = tiny_model(seed=0)
    with pytest.raises(ValueError, match="sd1, sd2 or sdxl"):
        encode_texts(m.text_encoders, m.tokenizers, ["a"], base="sd3")


def test_emphasis_toys_cases_33_and_34() -> None:
    """Cases 33-34 [calc]: z=[[1,2],[3,4]], w=[1,2] -> [[0.588235,1.176471],[3.529412,4.705882]];
    beside a second text z=[[1,1],[1,1]], w=[1,1] (one batch), that text becomes 0.666667 everywhere."""
    from retouch.models.text import _apply_emphasis
    from retouch.prompts.types import Chunk

    z = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    one = _apply_emphasis(z, [Chunk((0, 0), (1.0, 2.0))], "Original")
    assert torch.allclose(one, torch.tensor([[[0.588235, 1.176471], [3.529412, 4.705882]]]), atol=1e-6)
    two = _apply_emphasis(torch.cat([z, torch.ones(1, 2, 2)]), [Chunk((0, 0), (1.0, 2.0)), Chunk((0, 0), (1.0, 1.0))],
                          "Original")
    assert torch.allclose(two[1], torch.full((2, 2), 2 / 3), atol=1e-6)
    assert torch.equal(_apply_emphasis(z, [Chunk((0, 0), (1.0, 2.0))], "No norm"), torch.tensor([[[1.0, 2.0], [6.0, 8.0]]]))
