"""``retouch models [DIR]``: the checkpoints in a folder, with family and A1111 model hash.

Found, recursively: single files (``.safetensors``, ``.ckpt``, ``.pt``, ``.pth``) and diffusers folders
(a ``model_index.json``; their component files are not listed separately). The family comes from
``retouch.models.detect`` on the tensor names and shapes, read from the safetensors header without
loading any tensor (pickles are opened memory-mapped with ``weights_only``). A plain SD2 file may still
turn out to be v-prediction when loaded (``loading.load_model`` decides that from a YAML or a probe).
The hash is A1111's short model hash (cached by ``models.hashing``); diffusers folders have none.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ModelEntry", "find_checkpoints", "describe_checkpoint", "safetensors_shapes", "format_table"]

_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint: ``family`` is a family name or ``"unknown"`` with the reason in ``error``."""

    name: str
    path: str
    family: str
    hash: str | None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def find_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files and diffusers folders under ``folder``, sorted; hidden entries skipped."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if "model_index.json" in files:
            found.append(here)
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(here / f for f in files if not f.startswith(".") and f.lower().endswith(_SUFFIXES))
    return sorted(found)


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header (8-byte little-endian length, then JSON)."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("file too short for a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_HEADER:
            raise ValueError(f"safetensors header of {length} bytes is implausibly large")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def _family(path: Path) -> str:
    from retouch.models import detect

    if path.is_dir():
        return detect.detect_family_diffusers(path).name
    if path.suffix.lower() == ".safetensors":
        shapes = safetensors_shapes(path)
    else:
        from retouch.models.loading import read_state_dict

        sd, _ = read_state_dict(path)
        shapes = {k: tuple(v.shape) for k, v in sd.items()}
    if not any(k.startswith("model.diffusion_model.") for k in shapes) and any(
        ".conv_in." in k for k in shapes
    ):
        return "vae"
    return detect.detect_family(shapes).name


def describe_checkpoint(path: Path) -> ModelEntry:
    """Family and hash of one checkpoint; a file that cannot be read is listed with its error."""
    name = path.name if path.is_dir() else path.stem
    try:
        family = _family(path)
    except Exception as exc:  # any unreadable file is reported in the listing, not fatal
        return ModelEntry(name, str(path), "unknown", None, f"{type(exc).__name__}: {exc}")
    digest = None
    if path.is_file():
        from retouch.models.hashing import model_hash

        digest = model_hash(path)
    return ModelEntry(name, str(path), family, digest)


def format_table(entries: list[ModelEntry]) -> str:
    """Aligned ``NAME FAMILY HASH PATH`` rows (errors follow their row, indented)."""
    header = ("NAME", "FAMILY", "HASH")
    cells = [(e.name, e.family, e.hash or "-") for e in entries]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(3)]

    def row(values: tuple[str, str, str], path: str) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + "  " + path

    lines = [row(header, "PATH")]
    for entry, values in zip(entries, cells, strict=True):
        lines.append(row(values, entry.path))
        if entry.error:
            lines.append(f"    {entry.error}")
    return "\n".join(lines)
