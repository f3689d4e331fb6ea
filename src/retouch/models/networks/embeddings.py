"""Textual-inversion embeddings: the files, the folder of them, and the lookup the chunker uses.

Matches A1111 v1.10's ``EmbeddingDatabase`` (spec a1111-prompts.md §4.1-§4.3, §4.6; A1111's
``modules/textual_inversion/textual_inversion.py`` and ``modules/api/api.py`` were read for the facts):

* **Files** (:func:`read_embedding`): ``.pt``/``.bin`` (pickles, loaded by
  :func:`retouch.models.loading.load_pickle`, which runs no code from the file), ``.safetensors`` and
  images (``.png``/``.webp``/``.jxl``/``.avif``, :mod:`.embedding_images`). The data is an A1111
  ``{"string_to_param": {token: T}}`` (a dict or a ``ParameterDict``, exactly one entry), an SDXL
  ``{"clip_l": T, "clip_g": T}``, or a one-key ``{key: T}`` (kohya's ``emb_params``, diffusers'
  ``learned_embeds.bin``). A 1-D ``T`` is one vector. Vectors become float32 on the CPU.
* **Names**: the file name without its extension (case kept) for ``.pt``/``.bin``/``.safetensors``,
  whatever name is stored inside; ``data["name"]`` else the stem for images. ``*.preview.<image>``
  and empty files are not embeddings; other extensions are ignored.
* **Fit**: an embedding whose width (``shape``; SDXL: ``clip_l`` + ``clip_g``) is not the model's goes to
  :attr:`EmbeddingDatabase.skipped` and is never used.
* **Lookup**: each loaded name is tokenized with the model's first tokenizer (no BOS/EOS) and filed
  under its first id, longest first, so matching is on tokens: case-insensitive, and ``myembs`` does
  not trigger ``myemb``. When two files tokenize alike (``Foo.pt``, ``foo.pt``), both are loaded and the
  first in the lookup list wins: the files are read in sorted path order and the sort by length is
  stable, so here ``Foo.pt``. Two files with the *same* name: the later one (path order) replaces the
  earlier, as in A1111, and the earlier is listed in :attr:`EmbeddingDatabase.problems`.

Deviations from A1111, all deliberate:

* The folder is read in sorted path order (A1111: ``os.walk`` order, which the file system decides), so
  the winner among look-alike names is the same on every machine.
* :meth:`EmbeddingDatabase.refresh` reloads when any embedding file anywhere in the tree was added,
  removed, resized or touched; A1111 only compares the top folder's mtime, which misses files replaced
  in place and changes in sub-folders.
* A file that cannot be read is listed in ``problems`` with the reason (A1111 prints a traceback);
  an image without embedding data is such a problem too (A1111 passes over it silently).
* A one-key mapping whose value is a ``Parameter``, or an ``OrderedDict``, is accepted (A1111 checks for
  exactly ``dict`` and ``Tensor`` and rejects them); a 1-D ``string_to_param`` tensor is one vector
  (A1111 would count its width as vectors). Tensors of more than two dimensions are refused.
* On SDXL a single-tensor embedding is skipped even when its width is 2048: it has no ``clip_l`` /
  ``clip_g`` split (A1111 loads it and fails when the prompt uses it).
* ``TI hashes`` names each embedding once (A1111 repeats it per prompt and per encoder, §4.6).

The database is read-only between refreshes: each refresh builds a new immutable snapshot and swaps
it in, so readers (the API) see the old or the new state, never a half-built one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from retouch.models.hashing import file_sha256
from retouch.models.loading import UnsafeCheckpointError, load_pickle
from retouch.models.networks import embedding_images
from retouch.prompts import embedding_lookup
from retouch.prompts.types import EmbeddingRef

__all__ = [
    "Embedding",
    "EmbeddingDatabase",
    "EmbeddingFormatError",
    "read_embedding",
    "token_embedding_widths",
    "TI_SHORTHASH_LENGTH",
    "TENSOR_SUFFIXES",
    "IMAGE_SUFFIXES",
]

_log = logging.getLogger(__name__)

TENSOR_SUFFIXES = (".pt", ".bin", ".safetensors")
IMAGE_SUFFIXES = (".png", ".webp", ".jxl", ".avif")
TI_SHORTHASH_LENGTH = 12
_SDXL_KEYS = ("clip_l", "clip_g")
_METADATA_KEYS = ("step", "sd_checkpoint", "sd_checkpoint_name")


class EmbeddingFormatError(ValueError):
    """A file in the embeddings folder is not a textual-inversion embedding Retouch can read."""


@dataclass(frozen=True, eq=False)
class Embedding:
    """One embedding file's vectors: ``parts`` holds one ``(n, width)`` float32 tensor per text encoder
    (SD1/SD2: one; SDXL: ``clip_l`` then ``clip_g``). ``step``, ``sd_checkpoint`` and
    ``sd_checkpoint_name`` are the file's own metadata (None when absent), as A1111 reports them."""

    name: str
    path: Path
    parts: tuple[torch.Tensor, ...]
    step: Any = None
    sd_checkpoint: Any = None
    sd_checkpoint_name: Any = None

    @property
    def vectors(self) -> int:
        """How many token positions it takes (A1111 ``vectors``)."""
        return int(self.parts[-1].shape[0])

    @property
    def shape(self) -> int:
        """Its total width (A1111 ``shape``): 768 SD1, 1024 SD2, 768 + 1280 = 2048 SDXL."""
        return sum(int(p.shape[-1]) for p in self.parts)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(p.shape[-1]) for p in self.parts)


def _as_matrix(value: Any, what: str) -> torch.Tensor:
    """``value`` as an ``(n, width)`` float32 CPU tensor of its own (a 1-D tensor is one vector)."""
    if not isinstance(value, torch.Tensor):
        raise EmbeddingFormatError(f"{what} is a {type(value).__name__}, expected a tensor")
    matrix = value.detach().to("cpu", torch.float32).clone()
    if matrix.ndim == 1:
        matrix = matrix.unsqueeze(0)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise EmbeddingFormatError(f"{what} has shape {tuple(value.shape)}, expected (vectors, width) or (width,)")
    return matrix


def _parts_of(data: Any) -> tuple[torch.Tensor, ...]:
    """The vectors of A1111's three data layouts (spec §4.2), in A1111's order of checks."""
    if not isinstance(data, Mapping) or not data:
        raise EmbeddingFormatError(f"holds a {type(data).__name__}, expected a non-empty mapping of tensors")
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # a ParameterDict keeps its tensors here
        if not isinstance(params, Mapping) or len(params) != 1:
            count = len(params) if isinstance(params, Mapping) else type(params).__name__
            raise EmbeddingFormatError(f"string_to_param must hold exactly one entry, found {count}")
        return (_as_matrix(next(iter(params.values())), "string_to_param's entry"),)
    if all(key in data for key in _SDXL_KEYS):
        clip_l, clip_g = (_as_matrix(data[key], key) for key in _SDXL_KEYS)
        if clip_l.shape[0] != clip_g.shape[0]:
            raise EmbeddingFormatError(f"clip_l has {clip_l.shape[0]} vectors but clip_g has {clip_g.shape[0]}")
        return clip_l, clip_g
    if isinstance(next(iter(data.values())), torch.Tensor):
        if len(data) != 1:
            raise EmbeddingFormatError(f"a one-tensor embedding must have exactly one key, found {sorted(map(str, data))[:8]}")
        return (_as_matrix(next(iter(data.values())), f"entry {next(iter(data))!r}"),)
    raise EmbeddingFormatError(
        "is neither an A1111 embedding (string_to_param), an SDXL one (clip_l and clip_g) "
        f"nor a one-tensor mapping; its keys are {sorted(map(str, data))[:8]}"
    )


def _read_data(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(os.fspath(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise EmbeddingFormatError(f"cannot read the safetensors file: {exc}") from None
    if suffix in IMAGE_SUFFIXES:
        try:
            return embedding_images.read_image_embedding(path)
        except ValueError as exc:
            raise EmbeddingFormatError(str(exc)) from None
    try:
        return load_pickle(path)
    except UnsafeCheckpointError:
        raise
    except Exception as exc:  # zip/pickle errors of a damaged or truncated file
        raise EmbeddingFormatError(f"cannot unpickle the file: {exc}") from None


def _is_candidate(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Path(path.stem).suffix.lower() != ".preview"
    return suffix in TENSOR_SUFFIXES


def read_embedding(path: str | os.PathLike[str]) -> Embedding | None:
    """The embedding in the file at ``path`` (module docstring), or None for a file that is not one by
    A1111's rules (another extension, ``*.preview.png``, an empty file).

    Raises EmbeddingFormatError (or UnsafeCheckpointError for a pickle that would run code) naming the
    problem.
    """
    file = Path(path)
    if not _is_candidate(file) or file.stat().st_size == 0:
        return None
    try:
        data = _read_data(file)
        parts = _parts_of(data)
    except EmbeddingFormatError as exc:
        raise EmbeddingFormatError(f"{file.name}: {exc}") from None
    name = file.stem
    if file.suffix.lower() in IMAGE_SUFFIXES and isinstance(data.get("name"), str) and data["name"]:
        name = data["name"]
    meta = {key: _plain(data.get(key)) for key in _METADATA_KEYS}
    return Embedding(name=name, path=file, parts=parts, **meta)


def _plain(value: Any) -> Any:
    """A metadata value as JSON can carry it (A1111 passes the raw value; a stray tensor would not serialise)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


def token_embedding_widths(text_encoders: Sequence[Any]) -> tuple[int, ...]:
    """Each text encoder's token-embedding width (SD1 768, SD2 1024, SDXL (768, 1280))."""
    return tuple(int(encoder.get_input_embeddings().embedding_dim) for encoder in text_encoders)


@dataclass(frozen=True)
class _Snapshot:
    """One load of the folder: what was found, and the stat signature it was built from."""

    signature: tuple[tuple[str, int, int], ...] = ()
    loaded: Mapping[str, Embedding] = field(default_factory=dict)
    skipped: Mapping[str, Embedding] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)
    lookup: Mapping[int, tuple[EmbeddingRef, ...]] = field(default_factory=dict)


def _walk(folder: Path) -> list[Path]:
    """Candidate files under ``folder`` in sorted path order, following links (each real folder once)."""
    found: list[Path] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        found.extend(Path(root) / name for name in files if _is_candidate(Path(name)))
    return sorted(found)


def _signature(folder: Path, files: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime in ns) of each file; a dangling link counts as size -1."""
    entries = []
    for file in files:
        try:
            stat = file.stat()
            entry = (file.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns)
        except OSError:
            entry = (file.relative_to(folder).as_posix(), -1, 0)
        entries.append(entry)
    return tuple(entries)


def _token_ids(tokenizer: Any, name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in tokenizer(name, add_special_tokens=False)["input_ids"])


class EmbeddingDatabase:
    """The textual-inversion embeddings of one folder, for one model (module docstring for the rules).

    ``tokenizer``: the model's first tokenizer (a transformers ``CLIPTokenizer``, called as
    ``tokenizer(text, add_special_tokens=False)``); ``widths``: each text encoder's token-embedding width
    (:func:`token_embedding_widths`; :meth:`for_bundle` does both). The folder is read at once; call
    :meth:`refresh` before each job (cheap when nothing changed). Not for concurrent refreshes.
    """

    def __init__(self, folder: str | os.PathLike[str], tokenizer: Any, widths: Sequence[int]) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"embeddings folder {self.folder} does not exist or is not a folder")
        if not widths or any(int(w) <= 0 for w in widths):
            raise ValueError(f"widths must be one positive width per text encoder, got {list(widths)}")
        self.widths = tuple(int(w) for w in widths)
        self._tokenizer = tokenizer
        self._snapshot = _Snapshot()
        self.refresh(force=True)

    @classmethod
    def for_bundle(cls, folder: str | os.PathLike[str], bundle: Any) -> EmbeddingDatabase:
        """A database for a :class:`~retouch.models.bundle.ModelBundle`: its first tokenizer, its widths."""
        return cls(folder, bundle.tokenizers[0], token_embedding_widths(bundle.text_encoders))

    @property
    def expected_shape(self) -> int:
        """The width an embedding must have (A1111 ``expected_shape``): the sum of the encoders' widths."""
        return sum(self.widths)

    @property
    def loaded(self) -> Mapping[str, Embedding]:
        """Usable embeddings by name, sorted by lower-cased name (A1111's ``word_embeddings`` order)."""
        return self._snapshot.loaded

    @property
    def skipped(self) -> Mapping[str, Embedding]:
        """Embeddings of the wrong width for this model, by name, in load order; never used."""
        return self._snapshot.skipped

    @property
    def problems(self) -> Mapping[str, str]:
        """Files that were not loaded, by path relative to the folder, with the reason."""
        return self._snapshot.problems

    @property
    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """(path, size, mtime) of the files the current embeddings were read from: changes on every reload."""
        return self._snapshot.signature

    def refresh(self, force: bool = False) -> bool:
        """Reload if any embedding file was added, removed or changed (or ``force``); True if it reloaded."""
        if not self.folder.is_dir():
            raise FileNotFoundError(f"embeddings folder {self.folder} does not exist any more")
        files = _walk(self.folder)
        signature = _signature(self.folder, files)
        if not force and signature == self._snapshot.signature:
            return False
        self._snapshot = self._load(files, signature)
        return True

    def _load(self, files: Sequence[Path], signature: tuple[tuple[str, int, int], ...]) -> _Snapshot:
        registered: dict[str, Embedding] = {}
        skipped: dict[str, Embedding] = {}
        problems: dict[str, str] = {}
        for file in files:
            rel = file.relative_to(self.folder).as_posix()
            try:
                embedding = read_embedding(file)
            except (EmbeddingFormatError, UnsafeCheckpointError, OSError) as exc:
                problems[rel] = str(exc)
                _log.warning("embedding %s not loaded: %s", rel, exc)
                continue
            if embedding is None:
                continue
            if embedding.widths != self.widths:
                skipped[embedding.name] = embedding
            elif embedding.name in registered:
                earlier = registered.pop(embedding.name)
                problems[earlier.path.relative_to(self.folder).as_posix()] = (
                    f"replaced by {rel}, which has the same name {embedding.name!r}"
                )
                registered[embedding.name] = embedding
            else:
                registered[embedding.name] = embedding
        ids = self._name_ids(registered, problems)
        usable = [registered[name] for name in ids]
        loaded = {e.name: e for e in sorted(usable, key=lambda e: e.name.lower())}
        return _Snapshot(signature, loaded, skipped, problems, embedding_lookup(EmbeddingRef(e.name, ids[e.name], e.vectors) for e in usable))

    def _name_ids(self, registered: Mapping[str, Embedding], problems: dict[str, str]) -> dict[str, tuple[int, ...]]:
        """Each name's token ids under the first tokenizer, in registration order; untokenizable names are problems."""
        ids: dict[str, tuple[int, ...]] = {}
        for name, embedding in registered.items():
            tokens = _token_ids(self._tokenizer, name)
            if tokens:
                ids[name] = tokens
            else:
                rel = embedding.path.relative_to(self.folder).as_posix()
                problems[rel] = f"its name {name!r} has no tokens, so no prompt can name it"
        return ids

    def lookup(self) -> dict[int, list[EmbeddingRef]]:
        """The chunker's table (spec §4.3): first token id -> candidates, longest name first.

        Among names of equal token length the earlier file (sorted path order) comes first and wins.
        """
        return {first: list(refs) for first, refs in self._snapshot.lookup.items()}

    def _get(self, name: str) -> Embedding:
        embedding = self._snapshot.loaded.get(name)
        if embedding is None:
            where = " (it is skipped: its width does not fit this model)" if name in self._snapshot.skipped else ""
            raise KeyError(f"no loaded textual-inversion embedding named {name!r}{where}; loaded: {sorted(self.loaded)}")
        return embedding

    def vectors(self, name: str, encoder_index: int) -> torch.Tensor:
        """The vectors of ``name`` for text encoder ``encoder_index``: ``(n, widths[encoder_index])`` float32, CPU.

        SDXL: encoder 0 gets the ``clip_l`` part and encoder 1 the ``clip_g`` part (A1111's
        ``textual_inversion_key``); SD1/SD2 have one encoder and one tensor. A fresh copy each call.
        """
        embedding = self._get(name)
        if not 0 <= encoder_index < len(self.widths):
            raise IndexError(f"encoder_index must be in 0..{len(self.widths) - 1} for this model, got {encoder_index}")
        return embedding.parts[encoder_index].clone()

    def splice(
        self, token_embeddings: torch.Tensor, fixes: Sequence[Sequence[tuple[int, str]]], encoder_index: int
    ) -> torch.Tensor:
        """``token_embeddings`` ``(B, 77, C)`` (before positional embeddings) with each row's fixes applied.

        ``fixes[b]`` is chunk ``b``'s ``Chunk.fixes``: the vectors of ``name`` replace rows
        ``offset + 1 .. offset + n``, at most ``77 - offset - 1`` of them (A1111's ``EmbeddingsWithFixes``,
        spec §2.5), cast to the tensor's dtype and device. Returns a new tensor; the input is not changed.
        """
        if token_embeddings.ndim != 3 or len(fixes) != token_embeddings.shape[0]:
            raise ValueError(
                f"token_embeddings must be (B, tokens, C) with one fixes list per row; got shape "
                f"{tuple(token_embeddings.shape)} and {len(fixes)} fixes lists"
            )
        out = token_embeddings.clone()
        for row, row_fixes in enumerate(fixes):
            for offset, name in row_fixes:
                vec = self.vectors(name, encoder_index)
                count = min(out.shape[1] - offset - 1, vec.shape[0])
                out[row, offset + 1 : offset + 1 + count] = vec[:count].to(out.device, out.dtype)
        return out

    def shorthash(self, name: str) -> str:
        """A1111's TI shorthash: the first 12 hex digits of the SHA-256 of the whole file (spec §4.6)."""
        return file_sha256(self._get(name).path)[:TI_SHORTHASH_LENGTH]

    def infotext_hashes(self, names_used: Iterable[str]) -> str:
        """The ``TI hashes`` infotext value: ``"name: shorthash, ..."``, each embedding once, in order of first use.

        ``:`` and ``,`` are removed from the names as A1111 does; A1111 repeats an embedding once per prompt
        and encoder that used it, we write it once. Empty when nothing was used. Quoting (the value holds
        ``:``) is the infotext writer's job.
        """
        entries = []
        for name in dict.fromkeys(names_used):
            clean = name.replace(":", "").replace(",", "")
            entries.append(f"{clean}: {self.shorthash(name)}")
        return ", ".join(entries)

    def api_listing(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``GET /sdapi/v1/embeddings``'s body as A1111 builds it (``modules/api/api.py`` ``get_embeddings``).

        ``{"loaded": {name: {"step", "sd_checkpoint", "sd_checkpoint_name", "shape", "vectors"}}, "skipped": ...}``;
        the first three are the file's own values, None when it has none (always for ``.safetensors``).
        """
        return {"loaded": _listing(self.loaded), "skipped": _listing(self.skipped)}


def _listing(embeddings: Mapping[str, Embedding]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "step": e.step,
            "sd_checkpoint": e.sd_checkpoint,
            "sd_checkpoint_name": e.sd_checkpoint_name,
            "shape": e.shape,
            "vectors": e.vectors,
        }
        for name, e in embeddings.items()
    }
