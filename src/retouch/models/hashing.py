"""Model file hashes as A1111 shows them, cached so that a big file is read once (spec §7, infotext).

A1111's ``Model hash`` (and ``VAE hash``) is the first 10 hex digits of the file's SHA-256. LoRA files
use the "addnet" hash instead (``addnet_hash``, spec a1111-prompts.md §5.7). Hashing a
several-GB checkpoint takes seconds, so full digests are kept in a small JSON cache keyed by the
absolute path and validated by the file's size and modification time (nanoseconds): a replaced or
rewritten file is hashed again. The cache lives in ``$RETOUCH_CACHE_DIR`` when set, else in
``$XDG_CACHE_HOME/retouch`` (``~/.cache/retouch``). A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "file_sha256", "model_hash", "addnet_hash", "read_safetensors_metadata", "read_safetensors_header", "SHORT_HASH_LENGTH", "LORA_SHORT_HASH_LENGTH"]

SHORT_HASH_LENGTH = 10
#: A1111 writes LoRA hashes (``Lora hashes`` infotext) with 12 hex digits.
LORA_SHORT_HASH_LENGTH = 12
_CACHE_FILE = "hashes.json"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Retouch's user cache folder: ``$RETOUCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/retouch``."""
    explicit = os.environ.get("RETOUCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "retouch"


def _read_cache(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, dict[str, object]]) -> None:
    """Replace the cache file atomically (a concurrent reader sees the old or the new file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hashes-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def _sha256_of(path: Path, start: int = 0) -> str:
    """SHA-256 of the file's bytes from offset ``start`` to the end."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(start)
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_digest(path: str | os.PathLike[str], kind: str, compute: Callable[[Path], str]) -> str:
    """``compute(file)``, cached under (kind, absolute path) and validated by size and mtime (ns)."""
    file = Path(path).resolve()
    stat = file.stat()
    key = str(file) if kind == "sha256" else f"{kind}:{file}"
    cache_file = cache_dir() / _CACHE_FILE
    entry = _read_cache(cache_file).get(key)
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        cached = entry.get("sha256")
        if isinstance(cached, str) and len(cached) == 64:
            return cached
    digest = compute(file)
    cache = _read_cache(cache_file)  # re-read: another process may have added entries meanwhile
    cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    _write_cache(cache_file, cache)
    return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Full SHA-256 (64 lowercase hex) of the file at ``path``, read once per (path, size, mtime)."""
    return _cached_digest(path, "sha256", _sha256_of)


def _safetensors_header_length(file: Path) -> int:
    """The 8-byte little-endian JSON header length ``N`` of a safetensors file (tensor data start at 8+N)."""
    with file.open("rb") as f:
        head = f.read(8)
    if len(head) != 8:
        raise ValueError(f"{file} is not a safetensors file (shorter than its 8-byte header length)")
    length = int.from_bytes(head, "little")
    if 8 + length > file.stat().st_size:
        raise ValueError(f"{file} is not a complete safetensors file (header length {length} runs past the end)")
    return length


def read_safetensors_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """(the JSON header of a safetensors file, the byte offset where its tensor data start); reads the header only."""
    file = Path(path)
    length = _safetensors_header_length(file)
    with file.open("rb") as f:
        f.seek(8)
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{file} has a damaged safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{file} has a damaged safetensors header: not a JSON object")
    return header, 8 + length


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's JSON header ({} when absent); reads the header only."""
    header, _ = read_safetensors_header(path)
    meta = header.get("__metadata__")
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _tensor_bytes_sha256(file: Path) -> str:
    return _sha256_of(file, 8 + _safetensors_header_length(file))


def addnet_hash(path: str | os.PathLike[str]) -> str:
    """A1111's LoRA hash (64 hex; the infotext shows the first ``LORA_SHORT_HASH_LENGTH``), spec §5.7.

    ``.safetensors``: the metadata value ``sshs_model_hash`` when present (trusted, as A1111 does),
    else the SHA-256 of the bytes after the 8-byte little-endian header length and the JSON header
    (the "addnet" hash: metadata edits do not change it). Other files: SHA-256 of the whole file.
    """
    file = Path(path)
    if file.suffix.lower() != ".safetensors":
        return file_sha256(file)
    trusted = read_safetensors_metadata(file).get("sshs_model_hash")
    if trusted:
        return trusted
    return _cached_digest(file, "addnet", _tensor_bytes_sha256)


def model_hash(path: str | os.PathLike[str]) -> str:
    """A1111's short model hash: the first 10 hex digits of the file's SHA-256 (e.g. ``6ce0161689``)."""
    return file_sha256(path)[:SHORT_HASH_LENGTH]
