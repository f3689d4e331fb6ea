"""A LoRA/LyCORIS file's tensors bound to the modules of one model (A1111 ``load_network``, spec §5.2).

``bind_network`` groups the file's keys by module (kohya: split at the first ``.``; diffusers/PEFT:
``<component>.<module path>.<part>``), resolves each module through ``keys.resolve``, checks that a
network type accepts its parts, and applies A1111's all-four rule to OpenCLIP attention layers. The
result holds the file's tensors (fp16/bf16 ones widened to float32 once, which is exact; deltas are
computed in float32 anyway), never a copy of the model's weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from retouch.models.networks.deltas import NETWORK_TYPES, detect_type
from retouch.models.networks.errors import NetworkError
from retouch.models.networks.keys import COMPONENTS, ModuleIndex, Target, resolve, resolve_diffusers

__all__ = ["BoundModule", "LoadedNetwork", "bind_network"]

_DIFFUSERS_PARTS = ("lora_A.weight", "lora_B.weight", "lora_down.weight", "lora_up.weight", "lora_mid.weight",
                    "alpha", "dora_scale")
_BUNDLE_EMB = "bundle_emb."


@dataclass(frozen=True, eq=False)
class BoundModule:
    """The parts of one network module and the model module they change.

    ``key``: A1111's module name (or ``component.path`` for diffusers/PEFT keys); ``kind``: the network
    type (``deltas.NETWORK_TYPES``); ``is_text``: the te multiplier applies (else unet);
    ``keep_bias``: False for OpenCLIP q/k/v, whose bias deltas A1111 drops.
    """

    key: str
    target: Target
    kind: str
    parts: Mapping[str, torch.Tensor]
    is_text: bool
    keep_bias: bool = True


@dataclass(frozen=True, eq=False)
class LoadedNetwork:
    """A network file bound to one model. Compared by identity (two loads are two networks).

    ``unmatched``: file keys that name no module of this model (A1111 ignores them; report them);
    ``skipped``: modules matched but left unchanged by A1111's rules (an OpenCLIP attention layer without
    all four of q/k/v/out); ``bundle_embeddings``: ``bundle_emb.<name>.<key>`` tensors, per name.
    """

    name: str
    modules: tuple[BoundModule, ...]
    unmatched: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    bundle_embeddings: Mapping[str, Mapping[str, torch.Tensor]] = field(default_factory=dict)
    path: Path | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def _widened(tensor: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 file tensors as float32, once (exact), so each merge does not convert them again."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _split_diffusers(key: str) -> tuple[str, str, str] | None:
    """(component, module path, part) of a diffusers/PEFT key such as ``unet.<path>.lora_A.weight``."""
    component, _, rest = key.partition(".")
    if component not in COMPONENTS:
        return None
    for part in _DIFFUSERS_PARTS:
        if rest.endswith("." + part):
            return component, rest[: -len(part) - 1], part
    return None


def _group(tensors: Mapping[str, torch.Tensor], index: ModuleIndex) -> tuple[dict[str, tuple[Target, bool, dict[str, torch.Tensor]]], list[str], dict[str, dict[str, torch.Tensor]]]:
    """(A1111 key -> (target, is_text, parts), unmatched keys, bundled embeddings) in file order."""
    groups: dict[str, tuple[Target, bool, dict[str, torch.Tensor]]] = {}
    unmatched: list[str] = []
    embeddings: dict[str, dict[str, torch.Tensor]] = {}
    for file_key, tensor in tensors.items():
        if file_key.startswith(_BUNDLE_EMB):
            emb, _, part = file_key[len(_BUNDLE_EMB):].partition(".")
            embeddings.setdefault(emb, {})[part] = tensor
            continue
        found: tuple[str, Target, bool] | None = None
        diffusers = _split_diffusers(file_key)
        if diffusers is not None:
            component, path, part = diffusers
            target = resolve_diffusers(component, path, index)
            found = (f"{component}.{path}", target, component != "unet") if target is not None else None
        else:
            module_name, _, part = file_key.partition(".")
            hit = resolve(module_name, index)
            found = (hit[0], hit[1], hit[1].is_text) if hit is not None else None
        if found is None:
            unmatched.append(file_key)
            continue
        key, target, is_text = found
        groups.setdefault(key, (target, is_text, {}))[2][part] = _widened(tensor)
    return groups, unmatched, embeddings


def _attention_complete(groups: Mapping[str, tuple[Target, bool, dict[str, torch.Tensor]]]) -> set[str]:
    """The OpenCLIP attention layers for which this network has all of q/k/v/out (A1111's MHA rule)."""
    seen: dict[str, set[str]] = {}
    for key, (target, _, _) in groups.items():
        if target.attention is not None and key.startswith(target.attention + "_"):
            seen.setdefault(target.attention, set()).add(key[len(target.attention) + 1:])
    return {name for name, parts in seen.items() if parts >= {"q_proj", "k_proj", "v_proj", "out_proj"}}


def bind_network(
    name: str, tensors: Mapping[str, torch.Tensor], index: ModuleIndex,
    *, path: Path | None = None, metadata: Mapping[str, str] | None = None,
) -> LoadedNetwork:
    """Bind a network file's tensors to the modules in ``index`` (A1111 ``load_network``).

    Raises NetworkError when a module's parts fit no network type (A1111 refuses such a file too),
    for OFT files (not implemented), and when no key names a module of this model.
    """
    groups, unmatched, embeddings = _group(tensors, index)
    complete = _attention_complete(groups)
    modules, skipped = [], []
    for key, (target, is_text, parts) in groups.items():
        kind = detect_type(parts)
        if kind is None or (kind == "oft" and "oft_blocks" not in parts):
            what = "old LyCORIS OFT (oft_diag) is not supported" if kind == "oft" else "no network type accepts them"
            raise NetworkError(
                f"network {name!r}: module {key} has parts {', '.join(sorted(parts))}; {what} "
                f"(supported types: {', '.join(NETWORK_TYPES)})"
            )
        # kohya keys of an OpenCLIP attention layer (diffusers/PEFT keys are applied directly)
        in_group = target.attention is not None and key.startswith(target.attention + "_")
        if in_group and target.attention not in complete:
            skipped.append(key)
            continue
        keep_bias = not in_group or key.endswith("_out_proj")
        modules.append(BoundModule(key, target, kind, parts, is_text, keep_bias))
    if not modules and not skipped and not embeddings:
        sample = ", ".join(list(tensors)[:3]) or "none"
        raise NetworkError(
            f"network {name!r}: none of its {len(tensors)} keys names a module of this model (first keys: {sample}); "
            "is it a network for another model family?"
        )
    return LoadedNetwork(name, tuple(modules), tuple(unmatched), tuple(skipped), embeddings, path, dict(metadata or {}))
