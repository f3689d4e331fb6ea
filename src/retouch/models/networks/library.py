"""The LoRA folder: discovery, names and aliases as A1111 v1.10.1 (spec a1111-prompts.md §5.1).

* Files ``.safetensors``, ``.pt`` and ``.ckpt`` (any case) anywhere below the folder, visited in A1111's
  ``walk_files`` order (folders, then the files of each, by natural sort; folders whose path contains a
  part starting with ``.`` are skipped). **Name** = the file stem; a later file with the same stem
  replaces the earlier one.
* **Alias** = the safetensors metadata ``ss_output_name``, else the name. A name or alias maps to the
  last file that claimed it. An alias that a file claims when some file already holds that name or
  alias becomes *forbidden* (lower-cased), as does ``none``: a forbidden word finds only the file whose
  name it is exactly.
* ``find`` refuses an unknown name with ``NetworkError`` listing the available names; A1111 only writes
  ``Lora not found`` into the infotext comments and goes on.

Nothing is read at import or construction beyond the folder listing and the safetensors headers.
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retouch.models.hashing import LORA_SHORT_HASH_LENGTH, addnet_hash, read_safetensors_metadata
from retouch.models.networks.errors import NetworkError

__all__ = ["LoraEntry", "LoraLibrary", "NETWORK_SUFFIXES", "DEMO_LORA_DIR"]

NETWORK_SUFFIXES = (".pt", ".ckpt", ".safetensors")
#: The LoRAs built for the bundled demo model (``tools/demo/make_networks.py``).
DEMO_LORA_DIR = Path(__file__).resolve().parents[2] / "demo" / "networks" / "lora"
_ALWAYS_FORBIDDEN = ("none",)


@dataclass(frozen=True)
class LoraEntry:
    """One network file: A1111's ``name`` (stem), ``alias``, ``path`` and safetensors ``metadata``."""

    name: str
    alias: str
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)

    def short_hash(self) -> str:
        """The 12-hex ``Lora hashes`` value (A1111's addnet hash, spec §5.7); reads the file once (cached)."""
        return addnet_hash(self.path)[:LORA_SHORT_HASH_LENGTH]

    def as_api(self) -> dict[str, Any]:
        """The ``/sdapi/v1/loras`` item: ``{name, alias, path, metadata}``."""
        return {"name": self.name, "alias": self.alias, "path": str(self.path), "metadata": dict(self.metadata)}


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"([0-9]+)", text)]


def _walk(folder: Path) -> Iterator[Path]:
    """Network files below ``folder`` in A1111's ``walk_files`` order, hidden folders skipped."""
    visits = sorted(os.walk(folder, followlinks=True), key=lambda item: _natural_key(item[0]))
    for root, _, files in visits:
        if "/." in root or "\\." in root:
            continue
        for filename in sorted(files, key=_natural_key):
            if os.path.splitext(filename)[1].lower() in NETWORK_SUFFIXES:
                yield Path(root) / filename


def _metadata(path: Path) -> dict[str, str]:
    """Safetensors metadata; {} for pickles and for files whose header cannot be read (loading says why)."""
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        return read_safetensors_metadata(path)
    except (OSError, ValueError):
        return {}


class LoraLibrary:
    """The networks found under ``folder`` (re-read by ``refresh()``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._by_name: dict[str, LoraEntry] = {}
        self._by_alias: dict[str, LoraEntry] = {}
        self._forbidden: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Scan the folder again (A1111 ``list_available_networks``); a missing folder holds nothing."""
        by_name: dict[str, LoraEntry] = {}
        by_alias: dict[str, LoraEntry] = {}
        forbidden = set(_ALWAYS_FORBIDDEN)
        if self.folder.is_dir():
            for path in _walk(self.folder):
                metadata = _metadata(path)
                entry = LoraEntry(path.stem, metadata.get("ss_output_name", path.stem), path, metadata)
                by_name[entry.name] = entry
                if entry.alias in by_alias:
                    forbidden.add(entry.alias.lower())
                by_alias[entry.name] = entry
                by_alias[entry.alias] = entry
        self._by_name, self._by_alias, self._forbidden = by_name, by_alias, forbidden

    def list(self) -> list[LoraEntry]:
        """Every network, one per name, in discovery order."""
        return list(self._by_name.values())

    def names(self) -> builtins.list[str]:
        """The available names (file stems), sorted."""
        return sorted(self._by_name)

    def find(self, name_or_alias: str) -> LoraEntry:
        """The entry a ``<lora:NAME...>`` tag means (A1111 ``load_networks``), else NetworkError listing names."""
        if name_or_alias.lower() in self._forbidden:
            entry = self._by_name.get(name_or_alias)
        else:
            entry = self._by_alias.get(name_or_alias)
        if entry is not None:
            return entry
        available = ", ".join(self.names()) or f"none (no {'/'.join(NETWORK_SUFFIXES)} files in {self.folder})"
        hint = ""
        if name_or_alias.lower() in self._forbidden and name_or_alias in self._by_alias:
            hint = f" ({name_or_alias!r} is an alias of several files, so only a file name selects a file)"
        raise NetworkError(f"no LoRA named {name_or_alias!r}{hint}; available: {available}")
