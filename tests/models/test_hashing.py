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
