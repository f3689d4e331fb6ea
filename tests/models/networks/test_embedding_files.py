"""Textual-inversion file formats and names as A1111 v1.10 reads them (spec a1111-prompts.md §4.1-§4.2)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from retouch.models.loading import UnsafeCheckpointError, load_pickle
from retouch.models.networks import embedding_images
from retouch.models.networks.embeddings import EmbeddingFormatError, read_embedding

from .embedding_files import (
    a1111_data,
    plain_picture,
    vectors,
    write_pixel_png,
    write_pt,
    write_safetensors,
    write_text_chunk_png,
)


def test_a1111_pt_with_a_plain_dict(tmp_path: Path) -> None:
    """``string_to_param`` {"*": T}: T's rows are the vectors; the file stem is the name, the stored name is not."""
    vec = vectors(3, 8)
    e = read_embedding(write_pt(tmp_path / "MyEmb.pt", a1111_data(vec, step=120)))
    assert e is not None and e.name == "MyEmb" and e.vectors == 3 and e.shape == 8
    assert len(e.parts) == 1 and torch.equal(e.parts[0], vec) and e.parts[0].dtype == torch.float32
    assert (e.step, e.sd_checkpoint, e.sd_checkpoint_name) == (120, None, None)


def test_a1111_pt_with_a_parameter_dict_loads_through_the_safe_loader(tmp_path: Path) -> None:
    """Old A1111 files store a ``torch.nn.ParameterDict``; its one parameter is the embedding (``._parameters``)."""
    vec = vectors(2, 8, seed=1)
    path = write_pt(tmp_path / "pd.bin", a1111_data(vec, parameter_dict=True, sd_checkpoint="a1b2c3d4"))
    e = read_embedding(path)
    assert e is not None and e.name == "pd" and torch.equal(e.parts[0], vec) and e.sd_checkpoint == "a1b2c3d4"
    assert not e.parts[0].requires_grad


def test_string_to_param_with_two_entries_is_refused(tmp_path: Path) -> None:
    data = a1111_data(vectors(1, 8))
    data["string_to_param"] = {"*": vectors(1, 8), "other": vectors(1, 8)}
    with pytest.raises(EmbeddingFormatError, match=r"two\.pt: string_to_param must hold exactly one entry, found 2"):
        read_embedding(write_pt(tmp_path / "two.pt", data))


def test_sdxl_pair_in_safetensors_and_in_a_pickle(tmp_path: Path) -> None:
    """SDXL: parts (clip_l, clip_g); vectors = clip_g rows; shape = 8 + 12 = 20 (A1111: clip_g + clip_l widths)."""
    clip_l, clip_g = vectors(2, 8), vectors(2, 12, seed=1)
    for path in (write_safetensors(tmp_path / "xl.safetensors", {"clip_g": clip_g, "clip_l": clip_l}),
                 write_pt(tmp_path / "xl.pt", {"clip_l": clip_l, "clip_g": clip_g})):
        e = read_embedding(path)
        assert e is not None and e.name == "xl" and e.vectors == 2 and e.shape == 20 and e.widths == (8, 12)
        assert torch.equal(e.parts[0], clip_l) and torch.equal(e.parts[1], clip_g)


def test_sdxl_pair_with_different_vector_counts_is_refused(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "bad.safetensors", {"clip_l": vectors(2, 8), "clip_g": vectors(3, 12)})
    with pytest.raises(EmbeddingFormatError, match="clip_l has 2 vectors but clip_g has 3"):
        read_embedding(path)


def test_kohya_emb_params_and_diffusers_learned_embeds(tmp_path: Path) -> None:
    """One-key mappings: kohya ``{"emb_params": (n, w)}``; diffusers ``{token: (w,)}`` is one vector."""
    kohya = read_embedding(write_safetensors(tmp_path / "kohya.safetensors", {"emb_params": vectors(4, 8)}))
    assert kohya is not None and kohya.vectors == 4 and torch.equal(kohya.parts[0], vectors(4, 8))
    token = vectors(1, 8, seed=2)[0]
    concept = read_embedding(write_pt(tmp_path / "learned_embeds.bin", {"<cat-toy>": token}))
    assert concept is not None and concept.name == "learned_embeds" and concept.parts[0].shape == (1, 8)
    assert torch.equal(concept.parts[0][0], token) and concept.step is None


def test_one_tensor_mapping_with_two_keys_and_unknown_layouts_are_refused(tmp_path: Path) -> None:
    two = write_safetensors(tmp_path / "two.safetensors", {"a": vectors(1, 8), "b": vectors(1, 8)})
    with pytest.raises(EmbeddingFormatError, match=r"exactly one key, found \['a', 'b'\]"):
        read_embedding(two)
    with pytest.raises(EmbeddingFormatError, match="neither an A1111 embedding"):
        read_embedding(write_pt(tmp_path / "odd.pt", {"name": "x", "weights": [1, 2]}))
    with pytest.raises(EmbeddingFormatError, match="holds a Tensor, expected a non-empty mapping"):
        read_embedding(write_pt(tmp_path / "bare.pt", vectors(1, 8)))
    with pytest.raises(EmbeddingFormatError, match=r"shape \(1, 2, 8\), expected \(vectors, width\)"):
        read_embedding(write_pt(tmp_path / "cube.pt", {"emb_params": torch.zeros(1, 2, 8)}))


def test_png_text_chunk_uses_the_stored_name(tmp_path: Path) -> None:
    """Images take ``data["name"]`` (unlike .pt files); without one, the stem."""
    vec = vectors(2, 8, seed=3)
    named = read_embedding(write_text_chunk_png(tmp_path / "preview-render.png", a1111_data(vec, step=7)))
    assert named is not None and named.name == "stored-name" and named.step == 7 and torch.equal(named.parts[0], vec)
    data = a1111_data(vec)
    del data["name"]
    anonymous = read_embedding(write_text_chunk_png(tmp_path / "anon.png", data))
    assert anonymous is not None and anonymous.name == "anon"


@pytest.mark.parametrize("border", [0, 5])
def test_pixel_encoded_png_round_trip(tmp_path: Path, border: int) -> None:
    """Our encoder's picture, saved as PNG and read back (a black frame around it is cropped away)."""
    vec = vectors(3, 16, seed=4)
    e = read_embedding(write_pixel_png(tmp_path / "pix.png", a1111_data(vec, step=42), border=border))
    assert e is not None and e.name == "stored-name" and e.step == 42 and torch.equal(e.parts[0], vec)


def test_lcg_stream_matches_a1111_reference_values() -> None:
    """The first values and the sum of the next 100,000, as asserted in A1111's image_embedding.py self-test."""
    stream = embedding_images.lcg_stream(100_100)
    assert stream[:12].tolist() == [253, 242, 127, 44, 157, 27, 239, 133, 38, 79, 167, 4]
    assert int(stream[100:].astype(np.int64).sum()) == 12731374


def test_pixel_layout_is_a1111s() -> None:
    """Layout facts from A1111's ``insert_image_data_embed``, checked on the encoder's output by hand:
    width = image + 2 blocks + 2 separators; block width = A1111's rounding of the nibble count; the
    separators are black; pixel (0, 0) of the low block holds ``(byte0 & 0xF) ^ (253 & 0xF)``, of the
    high block ``(byte0 >> 4) ^ (253 & 0xF)`` (253 = the LCG's first value)."""
    data = {"string_to_param": {"*": torch.ones(1, 4)}}
    payload = zlib.compress(embedding_images.dumps_embedding_json(data).encode(), level=9)
    picture = plain_picture(width=10, height=6)
    out = np.asarray(embedding_images.encode_pixel_embedding(picture, data))
    n, h = len(payload), 6
    size = n + h - n % h
    size += 3 * h - size % (3 * h)
    side = size // (3 * h)
    assert out.shape == (6, 10 + 2 * side + 2, 3)
    assert not out[:, side].any() and not out[:, side + 1 + 10].any()
    assert (out[:, side + 1 : side + 11] == (200, 120, 60)).all()
    assert out[0, 0, 0] & 0x0F == (payload[0] & 0x0F) ^ 0xD
    assert out[0, side + 12, 0] & 0x0F == (payload[0] >> 4) ^ 0xD


def test_image_without_embedding_data_is_an_error_and_previews_are_not_embeddings(tmp_path: Path) -> None:
    plain_picture().save(tmp_path / "render.png")
    with pytest.raises(EmbeddingFormatError, match="render.png: an image without embedding data"):
        read_embedding(tmp_path / "render.png")
    write_text_chunk_png(tmp_path / "emb.preview.png", a1111_data(vectors(1, 8)))
    assert read_embedding(tmp_path / "emb.preview.png") is None


def test_empty_files_and_other_extensions_are_not_embeddings(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    write_pt(tmp_path / "notes.txt", a1111_data(vectors(1, 8)))
    assert read_embedding(tmp_path / "empty.pt") is None and read_embedding(tmp_path / "notes.txt") is None


def test_damaged_files_get_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(EmbeddingFormatError, match="cut.safetensors: cannot read the safetensors file"):
        read_embedding(tmp_path / "cut.safetensors")
    whole = write_pt(tmp_path / "whole.pt", a1111_data(vectors(1, 8))).read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(EmbeddingFormatError, match="cut.pt: cannot unpickle the file"):
        read_embedding(tmp_path / "cut.pt")


class _TouchOnLoad:
    """Unpickling this object calls ``Path.touch(marker)``: a stand-in for a malicious payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    """The same payload creates its marker under an unrestricted ``torch.load`` (so it is live), but the
    safe loader refuses it before anything runs."""
    live, guarded = tmp_path / "live-marker", tmp_path / "guarded-marker"
    write_pt(tmp_path / "live.pt", {"string_to_param": {"*": _TouchOnLoad(live)}})
    torch.load(tmp_path / "live.pt", weights_only=False)
    assert live.exists()
    path = write_pt(tmp_path / "evil.pt", {"string_to_param": {"*": _TouchOnLoad(guarded)}})
    with pytest.raises(UnsafeCheckpointError, match="refused to load .*evil.pt: the pickle asks to import `"):
        read_embedding(path)
    with pytest.raises(UnsafeCheckpointError):
        load_pickle(path)
    assert not guarded.exists()


def test_safe_loader_still_refuses_other_modules(tmp_path: Path) -> None:
    """Allowing ``ParameterDict`` did not open the door to other torch.nn modules."""
    write_pt(tmp_path / "linear.pt", {"m": torch.nn.Linear(2, 2)})
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        load_pickle(tmp_path / "linear.pt")


def test_pixel_decoder_ignores_pictures_without_two_separators() -> None:
    assert embedding_images.decode_pixel_embedding(plain_picture()) is None
    assert embedding_images.decode_pixel_embedding(Image.new("RGB", (8, 8))) is None
