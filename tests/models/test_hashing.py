"""Model hashes as A1111 shows them (first 10 hex of SHA-256), cached by (path, size, mtime)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from retouch.models.hashing import cache_dir, file_sha256, model_hash


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(os.urandom(3 << 20) + b"tail")
    return path


def test_short_hash_is_the_first_ten_hex_of_sha256(weights):
    full = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert file_sha256(weights) == full
    assert model_hash(weights) == full[:10]


def test_empty_file(tmp_path):
    """SHA-256 of no bytes is e3b0c442 98fc1c14 9afbf4c8 ... (FIPS 180-4 test vector)."""
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert model_hash(tmp_path / "empty.ckpt") == "e3b0c44298"


def test_second_call_reads_the_cache_not_the_file(weights, _private_hash_cache):
    model_hash(weights)
    cache_file = _private_hash_cache / "hashes.json"
    cache = json.loads(cache_file.read_text())
    entry = cache[str(weights.resolve())]
    assert entry["size"] == weights.stat().st_size
    entry["sha256"] = "ab" * 32  # a value only the cache can supply
    cache_file.write_text(json.dumps(cache))
    assert model_hash(weights) == "abababab" + "ab"


def test_a_changed_file_is_hashed_again(weights, _private_hash_cache):
    first = model_hash(weights)
    with weights.open("ab") as f:
        f.write(b"more")
    assert model_hash(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()[:10] != first
    cache = json.loads((_private_hash_cache / "hashes.json").read_text())
    cache[str(weights.resolve())]["sha256"] = "cd" * 32
    (_private_hash_cache / "hashes.json").write_text(json.dumps(cache))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same size, new mtime
    assert model_hash(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()[:10]


def test_a_corrupt_or_unwritable_cache_is_ignored(weights, _private_hash_cache, monkeypatch, tmp_path):
    want = hashlib.sha256(weights.read_bytes()).hexdigest()[:10]
    _private_hash_cache.mkdir(parents=True)
    (_private_hash_cache / "hashes.json").write_text("{not json")
    assert model_hash(weights) == want
    assert json.loads((_private_hash_cache / "hashes.json").read_text())[str(weights.resolve())]["sha256"][:10] == want
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("RETOUCH_CACHE_DIR", str(blocker / "cache"))  # a folder inside a file cannot exist
    assert model_hash(weights) == want


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("RETOUCH_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("RETOUCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "retouch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "retouch"


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        model_hash(tmp_path / "absent.safetensors")


# ---- LoRA "addnet" hash (spec a1111-prompts.md §5.7, case 39) ------------------------------------

CASE_39 = bytes.fromhex("0200000000000000") + b"{}" + b"abc"


def test_addnet_hash_covers_only_the_bytes_after_the_header(tmp_path):
    """Case 39: header length 2, header ``{}``, data ``abc`` -> sha256(b"abc") (FIPS 180-2 vector)."""
    from retouch.models.hashing import LORA_SHORT_HASH_LENGTH, addnet_hash

    path = tmp_path / "foo.safetensors"
    path.write_bytes(CASE_39)
    assert addnet_hash(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert addnet_hash(path)[:LORA_SHORT_HASH_LENGTH] == "ba7816bf8f01"
    assert file_sha256(path).startswith("6c89478bb16da526")  # the whole file hashes differently


def test_addnet_hash_of_a_pickle_is_the_whole_file(tmp_path):
    from retouch.models.hashing import addnet_hash

    path = tmp_path / "foo.pt"
    path.write_bytes(CASE_39)
    assert addnet_hash(path) == hashlib.sha256(CASE_39).hexdigest()


def test_addnet_hash_ignores_metadata_edits_and_trusts_sshs_model_hash(tmp_path):
    import torch
    from safetensors.torch import save_file

    from retouch.models.hashing import addnet_hash

    tensors = {"a": torch.arange(6, dtype=torch.float32)}
    save_file(tensors, tmp_path / "a.safetensors", metadata={"ss_output_name": "one"})
    save_file(tensors, tmp_path / "b.safetensors", metadata={"ss_output_name": "a much longer name"})
    assert addnet_hash(tmp_path / "a.safetensors") == addnet_hash(tmp_path / "b.safetensors")
    save_file(tensors, tmp_path / "c.safetensors", metadata={"sshs_model_hash": "cafe" * 16})
    assert addnet_hash(tmp_path / "c.safetensors") == "cafe" * 16


def test_addnet_hash_of_a_truncated_file_names_the_problem(tmp_path):
    from retouch.models.hashing import addnet_hash

    path = tmp_path / "bad.safetensors"
    path.write_bytes(bytes.fromhex("ff00000000000000") + b"{}")
    with pytest.raises(ValueError, match="runs past the end"):
        addnet_hash(path)
