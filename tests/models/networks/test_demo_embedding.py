"""The shipped demo embedding ``redcircle``: the demo CLIP's token embeddings of ``a large red circle``
(tools/demo/make_embedding.py), so the encoder's output with it spliced in equals the phrase's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from retouch.models.bundle import ModelBundle
from retouch.models.loading import load_model
from retouch.models.networks.embeddings import EmbeddingDatabase
from retouch.prompts.types import EmbeddingRef

FOLDER = Path(__file__).resolve().parents[3] / "src" / "retouch" / "demo" / "networks" / "embeddings"
BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def demo() -> ModelBundle:
    return load_model("demo")


def _padded(ids: list[int]) -> torch.Tensor:
    return torch.tensor([[BOS, *ids] + [EOS] * (76 - len(ids))])


def test_redcircle_is_the_phrase_token_embeddings(demo: ModelBundle) -> None:
    db = EmbeddingDatabase.for_bundle(FOLDER, demo)
    assert list(db.loaded) == ["redcircle"] and not db.skipped and not db.problems
    phrase = demo.tokenizers[0]("a large red circle", add_special_tokens=False)["input_ids"]
    table = demo.text_encoders[0].get_input_embeddings().weight
    assert db.loaded["redcircle"].vectors == len(phrase) == 4
    assert torch.equal(db.vectors("redcircle", 0), table[torch.tensor(phrase)])
    name_ids = tuple(demo.tokenizers[0]("redcircle", add_special_tokens=False)["input_ids"])
    assert db.lookup() == {name_ids[0]: [EmbeddingRef("redcircle", name_ids, 4)]}


def test_splicing_redcircle_gives_the_phrase_conditioning(demo: ModelBundle) -> None:
    """Spec §2.5: placeholders (id 0) at rows 1..4 get the vectors before positional embeddings; the
    encoder's last hidden state then equals the one of the written phrase, bit for bit."""
    db = EmbeddingDatabase.for_bundle(FOLDER, demo)
    encoder = demo.text_encoders[0]
    phrase = demo.tokenizers[0]("a large red circle", add_special_tokens=False)["input_ids"]
    vec = db.vectors("redcircle", 0)

    def splice(_module: torch.nn.Module, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[0, 1 : 1 + vec.shape[0]] = vec.to(out.dtype)
        return out

    with torch.no_grad():
        expected = encoder(_padded(phrase)).last_hidden_state
        handle = encoder.get_input_embeddings().register_forward_hook(splice)
        try:
            spliced = encoder(_padded([0] * 4)).last_hidden_state
        finally:
            handle.remove()
        plain = encoder(_padded([0] * 4)).last_hidden_state
    assert torch.equal(spliced, expected) and not torch.allclose(plain, expected)
