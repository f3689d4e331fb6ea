"""Model file hashes as A1111 shows them, cached so that a big file is read once (spec §7, infotext).

A1111's ``Model hash`` (and ``VAE hash``) is the first 10 hex digits of the file's SHA-256. Hashing a
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
from pathlib import Path

__all__ = ["cache_dir", "file_sha256", "model_hash", "SHORT_HASH_LENGTH"]

SHORT_HASH_LENGTH = 10
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


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Full SHA-256 (64 lowercase hex) of the file at ``path``, read once per (path, size, mtime)."""
    file = Path(path).resolve()
    stat = file.stat()
    key = str(file)
    cache_file = cache_dir() / _CACHE_FILE
    cache = _read_cache(cache_file)
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        cached = entry.get("sha256")
        if isinstance(cached, str) and len(cached) == 64:
            return cached
    digest = _sha256_of(file)
    cache = _read_cache(cache_file)  # re-read: another process may have added entries meanwhile
    cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    _write_cache(cache_file, cache)
    return digest


def model_hash(path: str | os.PathLike[str]) -> str:
    """A1111's short model hash: the first 10 hex digits of the file's SHA-256 (e.g. ``6ce0161689``)."""
    return file_sha256(path)[:SHORT_HASH_LENGTH]
