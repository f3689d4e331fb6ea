"""A job's extra networks: ``<lora:...>`` tags merged into the model, embeddings for the text encoder.

Follows A1111's order (spec a1111-prompts.md §0.1, §5.5): the tags are taken from the positive prompt
(a tag in the negative prompt stays literal text, as in A1111) and removed from the text that is
encoded; the named networks are merged before the text encoder runs, so a text-encoder LoRA changes
the conditioning. The same set on the next job is not merged again; a job without tags gets the
original weights back, bit for bit (``NetworkPatcher``).

Where A1111 only logs (a name that matches no file, a network that does not fit the model, an
extra-network type it does not know), Retouch refuses the job with a ``ParamError`` naming the tag
and the allowed values: nothing is substituted silently. A name mentioned twice runs twice with the
multipliers of its last mention, as A1111 does.
"""

from __future__ import annotations

import os
from typing import Any

from retouch.models.bundle import ModelBundle
from retouch.models.networks.embeddings import EmbeddingDatabase
from retouch.models.networks.errors import NetworkError
from retouch.models.networks.library import LoraEntry, LoraLibrary
from retouch.models.networks.patcher import ActiveNetwork, NetworkPatcher
from retouch.params import ParamError
from retouch.prompts import LORA_KINDS, LoraTag, extra_networks, lora_tag

__all__ = ["Networks"]


class Networks:
    """The LoRA folder, the embeddings folder and the patcher of one engine's model."""

    def __init__(
        self, model: ModelBundle, *, embeddings_dir: str | os.PathLike[str] | None = None,
        lora_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if lora_dir is not None and not os.path.isdir(lora_dir):
            raise FileNotFoundError(f"LoRA folder {lora_dir} does not exist or is not a folder")
        self.embeddings = EmbeddingDatabase.for_bundle(embeddings_dir, model) if embeddings_dir else None
        self.loras = LoraLibrary(lora_dir) if lora_dir else None
        self.patcher: NetworkPatcher = model.network_patcher()
        self._mentioned: tuple[tuple[str, LoraEntry], ...] = ()
        self.comments: tuple[str, ...] = ()

    def activate(self, prompt: str) -> str:
        """Merge the networks ``prompt`` names (none: the original weights); return the prompt without tags."""
        text, tags = extra_networks(prompt)
        wanted: list[tuple[str, LoraTag]] = []
        for tag in tags:
            if tag.kind not in LORA_KINDS:
                raise ParamError(
                    f"prompt: extra network type {tag.kind!r} in {tag.text!r} is not supported; "
                    f"supported: {', '.join(f'<{k}:name:weight>' for k in LORA_KINDS)}"
                )
            wanted.append((tag.text, lora_tag(tag)))
        last = {lt.name: lt for _, lt in wanted}  # A1111: a repeated name takes its last multipliers
        entries = [(lt.name, self._find(text_, lt.name)) for text_, lt in wanted]
        active = []
        for name, entry in entries:
            lt = last[name]
            try:
                network = self.patcher.load(entry.path, entry.name)
                active.append(ActiveNetwork(network, lt.te, lt.unet, lt.dyn))
            except NetworkError as exc:
                raise ParamError(f"prompt: <lora:{name}>: {exc}") from None
        try:
            self.patcher.apply(active)
        except NetworkError as exc:
            raise ParamError(f"prompt: {exc}") from None
        self._mentioned = tuple(entries)
        self.comments = tuple(_comments(active))
        if self.embeddings is not None:
            self.embeddings.refresh()
        return text

    def _find(self, tag_text: str, name: str) -> LoraEntry:
        if self.loras is None:
            raise ParamError(f"prompt: {tag_text} names a LoRA, but no LoRA folder is configured (lora_dir, --lora-dir)")
        try:
            return self.loras.find(name)
        except NetworkError:
            self.loras.refresh()  # a file added since the last scan
        try:
            return self.loras.find(name)
        except NetworkError as exc:
            raise ParamError(f"prompt: {tag_text}: {exc}") from None

    def cache_key(self) -> Any:
        """Changes whenever the text encoders' weights or the embeddings change (text-encoding cache)."""
        merged = tuple((id(a.network), a.te, a.unet, a.dyn) for a in self.patcher.active)
        return merged, self.embeddings.signature if self.embeddings is not None else None

    def infotext(self, embeddings_used: tuple[str, ...]) -> dict[str, Any]:
        """``Lora hashes`` (the names as mentioned, addnet short hashes) and ``TI hashes`` (spec §4.6, §5.7)."""
        params: dict[str, Any] = {}
        if self._mentioned:
            hashes = {name.replace(":", "").replace(",", ""): entry.short_hash() for name, entry in self._mentioned}
            params["Lora hashes"] = ", ".join(f"{k}: {v}" for k, v in hashes.items())
        if embeddings_used and self.embeddings is not None:
            params["TI hashes"] = self.embeddings.infotext_hashes(embeddings_used)
        return params


def _comments(active: list[ActiveNetwork]) -> list[str]:
    """What A1111 only logs at debug level: keys that name no module, modules its rules leave unchanged."""
    out = []
    for net in {id(a.network): a.network for a in active}.values():
        if net.unmatched:
            out.append(f"LoRA {net.name}: {len(net.unmatched)} keys name no module of this model and were "
                       f"ignored, as A1111 does (first: {net.unmatched[0]})")
        if net.skipped:
            out.append(f"LoRA {net.name}: {len(net.skipped)} modules left unchanged by A1111's rules "
                       f"(first: {net.skipped[0]})")
    return out
