"""The embeddings folder as A1111 v1.10's EmbeddingDatabase sees it (spec a1111-prompts.md §4.1, §4.3, §4.6).

Token ids come from the bundled CLIP tokenizer, the one the chunker uses; spec case 31's ids for
``myembs`` (27551, 10370) are A1111's, measured there with the same BPE.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from retouch.models.networks.embeddings import EmbeddingDatabase
from retouch.models.tokenizers import clip_tokenizer
from retouch.prompts.types import EmbeddingRef
from retouch.testing import tiny_model

from .embedding_files import a1111_data, vectors, write_pt, write_safetensors

TOKENIZER = clip_tokenizer()


def ids(text: str) -> tuple[int, ...]:
    return tuple(TOKENIZER(text, add_special_tokens=False)["input_ids"])


def db(folder: Path, widths: tuple[int, ...] = (8,)) -> EmbeddingDatabase:
    return EmbeddingDatabase(folder, TOKENIZER, widths)


def test_lookup_is_by_tokens_so_case_does_not_matter_and_word_boundaries_do(tmp_path: Path) -> None:
    """Case 31: ``myemb`` (3 vectors) is filed under its first id; ``MyEmb`` in a prompt gives the same
    ids, so it matches; ``myembs`` tokenizes to (27551, 10370), which is not ``myemb``'s (27551, 3996)."""
    write_pt(tmp_path / "myemb.pt", a1111_data(vectors(3, 8)))
    table = db(tmp_path).lookup()
    assert table == {27551: [EmbeddingRef("myemb", (27551, 3996), 3)]}
    assert ids("MyEmb") == (27551, 3996)
    assert ids("myembs") == (27551, 10370) and ids("myembs")[:2] != table[27551][0].ids


def test_candidates_are_sorted_longest_first_and_ties_keep_path_order(tmp_path: Path) -> None:
    """``cat`` (1 id), ``cat toy`` (2), ``cat toy robot`` (3) share the first id 2368: longest first.
    ``Foo.pt`` and ``foo.pt`` tokenize alike; both load, and ``Foo`` (earlier in sorted path order) is first."""
    for name in ("cat", "cat toy robot", "cat toy"):
        write_pt(tmp_path / f"{name}.pt", a1111_data(vectors(1, 8)))
    write_pt(tmp_path / "foo.pt", a1111_data(vectors(2, 8)))
    write_pt(tmp_path / "Foo.pt", a1111_data(vectors(1, 8)))
    d = db(tmp_path)
    table = d.lookup()
    assert [r.name for r in table[2368]] == ["cat toy robot", "cat toy", "cat"]
    assert [r.ids for r in table[2368]] == [(2368, 5988, 8797), (2368, 5988), (2368,)]
    assert table[23435] == [EmbeddingRef("Foo", (23435,), 1), EmbeddingRef("foo", (23435,), 2)]
    assert list(d.loaded) == ["cat", "cat toy", "cat toy robot", "Foo", "foo"]  # A1111: sorted by lower-cased name


def test_lookup_returns_a_copy(tmp_path: Path) -> None:
    write_pt(tmp_path / "cat.pt", a1111_data(vectors(1, 8)))
    d = db(tmp_path)
    d.lookup()[2368].clear()
    assert len(d.lookup()[2368]) == 1


def test_wrong_width_goes_to_skipped_and_is_never_used(tmp_path: Path) -> None:
    """A 12-wide embedding on an 8-wide model, and an SDXL pair on a one-encoder model, are skipped."""
    write_pt(tmp_path / "ok.pt", a1111_data(vectors(1, 8)))
    write_pt(tmp_path / "wide.pt", a1111_data(vectors(2, 12)))
    write_safetensors(tmp_path / "xl.safetensors", {"clip_l": vectors(1, 8), "clip_g": vectors(1, 4)})
    d = db(tmp_path)
    assert list(d.loaded) == ["ok"] and list(d.skipped) == ["wide", "xl"]
    assert all(r.name == "ok" for refs in d.lookup().values() for r in refs)
    with pytest.raises(KeyError, match="'wide' .*skipped: its width does not fit"):
        d.vectors("wide", 0)


def test_sdxl_split_goes_to_each_encoder(tmp_path: Path) -> None:
    """SDXL (widths 8 + 12 here, 768 + 1280 for real): clip_l to encoder 0, clip_g to encoder 1; a single
    tensor, even of the total width, and a one-encoder embedding are skipped."""
    clip_l, clip_g = vectors(2, 8), vectors(2, 12, seed=1)
    write_safetensors(tmp_path / "xl.safetensors", {"clip_l": clip_l, "clip_g": clip_g})
    write_pt(tmp_path / "flat.pt", a1111_data(vectors(2, 20)))
    write_pt(tmp_path / "sd1.pt", a1111_data(vectors(2, 8)))
    d = db(tmp_path, widths=(8, 12))
    assert d.expected_shape == 20 and list(d.loaded) == ["xl"] and sorted(d.skipped) == ["flat", "sd1"]
    assert torch.equal(d.vectors("xl", 0), clip_l) and torch.equal(d.vectors("xl", 1), clip_g)
    assert d.vectors("xl", 0).dtype == torch.float32
    with pytest.raises(IndexError, match="encoder_index must be in 0..1"):
        d.vectors("xl", 2)


def test_vectors_are_a_fresh_float32_copy(tmp_path: Path) -> None:
    vec = vectors(3, 8).to(torch.float16)
    write_pt(tmp_path / "half.pt", a1111_data(vec))
    d = db(tmp_path)
    out = d.vectors("half", 0)
    assert out.dtype == torch.float32 and out.shape == (3, 8) and torch.equal(out, vec.float())
    out.zero_()
    assert torch.equal(d.vectors("half", 0), vec.float())


def test_folders_are_walked_recursively_and_same_names_replace(tmp_path: Path) -> None:
    """Names are stems wherever the file sits; of two files with one name the later (path order) is used."""
    write_pt(tmp_path / "a" / "deep" / "cat.pt", a1111_data(vectors(1, 8)))
    write_pt(tmp_path / "a" / "x.pt", a1111_data(vectors(1, 8, seed=1)))
    write_pt(tmp_path / "b" / "x.pt", a1111_data(vectors(1, 8, seed=2)))
    d = db(tmp_path)
    assert list(d.loaded) == ["cat", "x"] and torch.equal(d.vectors("x", 0), vectors(1, 8, seed=2))
    assert d.problems == {"a/x.pt": "replaced by b/x.pt, which has the same name 'x'"}
    assert len(d.lookup()[343]) == 1


def test_broken_files_are_problems_and_the_rest_loads(tmp_path: Path) -> None:
    write_pt(tmp_path / "good.pt", a1111_data(vectors(1, 8)))
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    write_pt(tmp_path / " .pt", a1111_data(vectors(1, 8)))  # the name " " has no tokens
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "dangling.pt").symlink_to(tmp_path / "gone.pt")
    d = db(tmp_path)
    assert list(d.loaded) == ["good"] and sorted(d.problems) == [" .pt", "broken.safetensors", "dangling.pt"]
    assert "cannot read the safetensors file" in d.problems["broken.safetensors"]
    assert d.problems[" .pt"] == "its name ' ' has no tokens, so no prompt can name it"


def test_a_missing_folder_and_bad_widths_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="embeddings folder .*nowhere does not exist"):
        db(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"one positive width per text encoder, got \[\]"):
        db(tmp_path, widths=())


def test_shorthash_is_12_hex_of_the_file_sha256_and_infotext_names_each_once(tmp_path: Path) -> None:
    """A1111: ``name: sha256(file)[:12]``, ``:`` and ``,`` removed from names. We list each embedding once,
    in order of first use (A1111 repeats entries per prompt and encoder)."""
    foo = write_pt(tmp_path / "foo.pt", a1111_data(vectors(1, 8)))
    odd = write_pt(tmp_path / "a,b:c.pt", a1111_data(vectors(1, 8, seed=1)))
    d = db(tmp_path)
    h_foo = hashlib.sha256(foo.read_bytes()).hexdigest()[:12]
    h_odd = hashlib.sha256(odd.read_bytes()).hexdigest()[:12]
    assert d.shorthash("foo") == h_foo and len(h_foo) == 12
    assert d.infotext_hashes(["a,b:c", "foo", "a,b:c", "foo"]) == f"abc: {h_odd}, foo: {h_foo}"
    assert d.infotext_hashes([]) == ""
    with pytest.raises(KeyError, match="no loaded textual-inversion embedding named 'bar'"):
        d.infotext_hashes(["bar"])


def test_refresh_reloads_only_when_a_file_changed(tmp_path: Path) -> None:
    """Unchanged folder: no reload (the same snapshot stays). Added, rewritten in place, or removed files
    anywhere in the tree: reload (A1111 watches only the top folder's mtime)."""
    write_pt(tmp_path / "cat.pt", a1111_data(vectors(1, 8)))
    d = db(tmp_path)
    before = d.loaded
    assert d.refresh() is False and d.loaded is before
    write_pt(tmp_path / "sub" / "dog.pt", a1111_data(vectors(1, 8)))
    assert d.refresh() is True and list(d.loaded) == ["cat", "dog"]
    assert d.refresh() is False
    cat = tmp_path / "cat.pt"
    write_pt(cat, a1111_data(vectors(2, 8)))
    stat = cat.stat()
    os.utime(cat, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert d.refresh() is True and d.loaded["cat"].vectors == 2
    (tmp_path / "sub" / "dog.pt").unlink()
    assert d.refresh() is True and list(d.loaded) == ["cat"]
    assert d.refresh(force=True) is True


def test_api_listing_has_a1111s_shape(tmp_path: Path) -> None:
    """``get_embeddings``: step / sd_checkpoint / sd_checkpoint_name are the file's values (None when absent,
    as ``data.get`` gives), shape the width (SDXL the sum), vectors the count; loaded and skipped alike."""
    write_pt(tmp_path / "trained.pt", a1111_data(vectors(2, 8), step=120, sd_checkpoint="a1b2c3d4", sd_checkpoint_name="v1-5"))
    write_safetensors(tmp_path / "kohya.safetensors", {"emb_params": vectors(4, 8)})
    write_safetensors(tmp_path / "xl.safetensors", {"clip_l": vectors(1, 8), "clip_g": vectors(1, 12)})
    assert db(tmp_path).api_listing() == {
        "loaded": {
            "kohya": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 8, "vectors": 4},
            "trained": {"step": 120, "sd_checkpoint": "a1b2c3d4", "sd_checkpoint_name": "v1-5", "shape": 8, "vectors": 2},
        },
        "skipped": {"xl": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 20, "vectors": 1}},
    }


@pytest.mark.parametrize(("family", "widths"), [("sd1", (32,)), ("sdxl", (32, 32))])
def test_for_bundle_measures_the_text_encoders(tmp_path: Path, family: str, widths: tuple[int, ...]) -> None:
    """Widths are the token-embedding widths of the bundle's encoders (tiny models: 32 each)."""
    write_pt(tmp_path / "e.pt", a1111_data(vectors(1, 32)))
    d = EmbeddingDatabase.for_bundle(tmp_path, tiny_model(0, family))
    assert d.widths == widths and d.expected_shape == sum(widths)
    assert list(d.loaded) == (["e"] if family == "sd1" else []) and list(d.skipped) == ([] if family == "sd1" else ["e"])


def test_splice_replaces_rows_after_the_offset_and_clips_at_the_chunk_end(tmp_path: Path) -> None:
    """Spec §2.5 / A1111 ``EmbeddingsWithFixes``: a fix (offset, name) writes rows offset+1 .. offset+n,
    at most 77 - offset - 1 vectors (offset 74 with 3 vectors: rows 75 and 76 only), in the tensor's dtype."""
    vec = vectors(3, 8)
    write_pt(tmp_path / "tri.pt", a1111_data(vec))
    d = db(tmp_path)
    base = torch.zeros(2, 77, 8, dtype=torch.bfloat16)
    out = d.splice(base, [[(1, "tri")], [(74, "tri")]], 0)
    assert out.dtype == torch.bfloat16 and not base.any()
    assert torch.equal(out[0, 2:5], vec.to(torch.bfloat16)) and not out[0, :2].any() and not out[0, 5:].any()
    assert torch.equal(out[1, 75:77], vec[:2].to(torch.bfloat16)) and not out[1, :75].any()
    with pytest.raises(ValueError, match=r"one fixes list per row; got shape \(2, 77, 8\) and 1 fixes lists"):
        d.splice(base, [[]], 0)
