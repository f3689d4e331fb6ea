"""Merge a job's networks into one model's weights and restore them exactly (spec a1111-prompts.md §5.4).

``NetworkPatcher(bundle)`` is owned by whoever owns the model (one per bundle). ``apply(networks)``
makes the weights equal to the original weights with the listed networks merged, in order:
``W <- (W.to(D.dtype) + ΔW).to(W.dtype)`` per module, each network computed against the weight as the
previous networks left it (what matters for IA3, GLoRA and DoRA), as A1111's ``network_apply_weights``.

* Only the touched tensors are backed up, the first time they change, bit-exact: on the CPU the
  merged weight goes to new storage and the original tensor itself is kept (no copy; restoring puts it
  back by reference); elsewhere the original is copied to the CPU and copied back. Restoring frees the
  backups, so ``apply([])`` leaves every parameter bitwise equal to what it was before and holds no
  extra memory.
* Asking for the same networks with the same multipliers again changes nothing (``merge_count``
  counts the merges that did happen); a different list restores first, then merges.
* A module that does not fit (e.g. an SD1 LoRA on SDXL) restores everything and raises NetworkError
  naming the first such module: unlike A1111, which counts the error and keeps going, nothing of that
  job runs with a half-applied network.
* A bias delta on a module without bias creates the bias (A1111 does the same); restoring removes it.

No forward hooks and no patched classes: the weights themselves change, under ``torch.no_grad()``,
so it works inside ``torch.inference_mode()`` and for weights on any device and in any float dtype.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from retouch.models.bundle import ModelBundle
from retouch.models.loading import read_state_dict
from retouch.models.networks.deltas import compute_dtype, lora_factors, module_delta
from retouch.models.networks.errors import NetworkError
from retouch.models.networks.keys import ModuleIndex, build_index, weight_of
from retouch.models.networks.network import BoundModule, LoadedNetwork, bind_network

__all__ = ["ActiveNetwork", "NetworkPatcher"]


@dataclass(frozen=True)
class ActiveNetwork:
    """One network of a job: the loaded file and A1111's ``te``/``unet`` multipliers and ``dyn_dim``."""

    network: LoadedNetwork
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None

    def __post_init__(self) -> None:
        for label, value in (("te", self.te), ("unet", self.unet)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise NetworkError(f"network {self.network.name!r}: {label} multiplier must be a finite number; got {value!r}")
        if self.dyn is not None and (isinstance(self.dyn, bool) or not isinstance(self.dyn, int) or self.dyn < 1):
            raise NetworkError(f"network {self.network.name!r}: dyn must be a positive integer or None; got {self.dyn!r}")


@dataclass(frozen=True)
class _Backup:
    module: torch.nn.Module
    attr: str
    saved: torch.Tensor | None  # None: the attribute was None (a bias that merging created)
    swapped: bool = False  # ``saved`` is the original storage itself, put back by reference


class NetworkPatcher:
    """Merges networks into ``bundle``'s UNet and text encoders and restores them exactly."""

    def __init__(self, bundle: ModelBundle) -> None:
        self._bundle = bundle
        self._index: ModuleIndex | None = None
        self._backups: dict[tuple[int, str], _Backup] = {}
        self._current: tuple[ActiveNetwork, ...] = ()
        self._loaded: dict[Path, tuple[tuple[int, int], LoadedNetwork]] = {}
        self.merge_count = 0

    @property
    def index(self) -> ModuleIndex:
        """The A1111 names of the bundle's modules (built on first use)."""
        if self._index is None:
            self._index = build_index(self._bundle)
        return self._index

    @property
    def active(self) -> tuple[ActiveNetwork, ...]:
        """The networks merged now, in order (empty: the original weights)."""
        return self._current

    @property
    def backup_bytes(self) -> int:
        """Bytes held by the backups of the tensors changed now."""
        return sum(b.saved.numel() * b.saved.element_size() for b in self._backups.values() if b.saved is not None)

    def load(self, path: str | os.PathLike[str], name: str | None = None) -> LoadedNetwork:
        """Read a network file with the safe loader and bind it to this model (NetworkError if it cannot be).

        The same file, unchanged on disk (size and mtime), gives back the same LoadedNetwork, so a
        repeated job with the same tags does not merge again.
        """
        file = Path(path).resolve()
        stat = file.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
        cached = self._loaded.get(file)
        if cached is not None and cached[0] == signature:
            return cached[1]
        tensors, metadata = read_state_dict(file)
        network = bind_network(name or file.stem, tensors, self.index, path=file, metadata=metadata)
        self._loaded[file] = (signature, network)
        return network

    def apply(self, networks: Sequence[ActiveNetwork]) -> bool:
        """Make the weights the originals with ``networks`` merged in order; False if they already are."""
        wanted = tuple(networks)
        for item in wanted:
            if not isinstance(item, ActiveNetwork):
                raise TypeError(f"apply() takes ActiveNetwork items; got {type(item).__name__}")
            self._check_bound_here(item.network)
        if wanted == self._current:
            return False
        self._restore()
        try:
            with torch.no_grad():
                for active in wanted:
                    for bound in active.network.modules:
                        self._merge(active, bound)
        except BaseException:
            self._restore()
            raise
        self._current = wanted
        self.merge_count += bool(wanted)
        keep = {id(a.network) for a in wanted}
        self._loaded = {p: v for p, v in self._loaded.items() if id(v[1]) in keep}
        return True

    def _check_bound_here(self, network: LoadedNetwork) -> None:
        own = self.index.diffusers
        for bound in network.modules:
            if own.get(bound.target.component, {}).get(bound.target.path) is not bound.target:
                raise NetworkError(f"network {network.name!r} was bound to another model; load it with this model's patcher")

    def restore(self) -> None:
        """The original weights again (same as ``apply([])``)."""
        self.apply(())

    def _restore(self) -> None:
        with torch.no_grad():
            for backup in self._backups.values():
                if backup.saved is None:
                    setattr(backup.module, backup.attr, None)
                elif backup.swapped:
                    getattr(backup.module, backup.attr).data = backup.saved
                else:
                    getattr(backup.module, backup.attr).copy_(backup.saved)
        self._backups.clear()
        self._current = ()

    def _back_up(self, module: torch.nn.Module, attr: str) -> None:
        key = (id(module), attr)
        if key not in self._backups:
            value = getattr(module, attr)
            saved = None if value is None else value.detach().to("cpu", copy=True)
            self._backups[key] = _Backup(module, attr, saved)

    def _swap(self, module: torch.nn.Module, attr: str, new: torch.Tensor) -> None:
        """Point ``module.attr`` at ``new``; the first time, keep the original storage as its backup.

        On the CPU this saves copying every touched weight (about half the merge time for a rank-32
        SD1.5 LoRA, bench/lora_merge.py) and makes restoring a pointer assignment; the memory held is
        the same as a copy's.
        """
        param = getattr(module, attr)
        key = (id(module), attr)
        if key not in self._backups:
            self._backups[key] = _Backup(module, attr, param.data, swapped=True)
        param.data = new

    def _merge(self, active: ActiveNetwork, bound: BoundModule) -> None:
        module, where = bound.target.module, f"{bound.key} ({bound.target.component}.{bound.target.path})"
        weight = weight_of(module)
        multiplier = active.te if bound.is_text else active.unet
        if weight.dtype == compute_dtype(weight) and weight.is_contiguous():
            factors = lora_factors(bound.parts, weight, multiplier, active.dyn)
            if factors is not None:  # plain LoRA: W + U @ V in one pass, no full-size temporary
                if weight.device.type == "cpu":  # the result goes to new storage; the original is the backup
                    merged = torch.addmm(weight.view(weight.shape[0], -1), *factors).view_as(weight)
                    self._swap(module, "weight", merged)
                else:  # accelerator memory: back up to the CPU and merge in place
                    self._back_up(module, "weight")
                    weight.view(weight.shape[0], -1).addmm_(*factors)
                return
        try:
            delta, bias_delta = module_delta(bound.parts, weight, multiplier, active.dyn)
        except RuntimeError as exc:  # a product of mismatched shapes inside the formula
            raise self._misfit(active, where, weight, str(exc)) from exc
        except NetworkError as exc:
            raise NetworkError(f"network {active.network.name!r}, module {where}: {exc}") from exc
        if delta.shape != weight.shape:
            raise self._misfit(active, where, weight, f"its delta has shape {tuple(delta.shape)}")
        bias_delta = bias_delta if bound.keep_bias else None
        if bias_delta is not None and bias_delta.shape != (weight.shape[0],):
            raise self._misfit(active, where, weight, f"its bias delta has shape {tuple(bias_delta.shape)}")
        self._back_up(module, "weight")
        if weight.dtype == delta.dtype:
            weight.add_(delta)  # the same bits as the expression below, without a temporary
        else:
            weight.copy_((weight.to(delta.dtype) + delta).to(weight.dtype))
        if bias_delta is not None:
            self._back_up(module, "bias")
            bias = getattr(module, "bias", None)
            if not isinstance(bias, torch.Tensor):
                module.bias = torch.nn.Parameter(bias_delta.to(weight.dtype), requires_grad=False)
            else:
                bias.copy_((bias.to(bias_delta.dtype) + bias_delta).to(bias.dtype))

    @staticmethod
    def _misfit(active: ActiveNetwork, where: str, weight: torch.Tensor, why: str) -> NetworkError:
        return NetworkError(
            f"network {active.network.name!r} does not fit this model: module {where} has weight shape "
            f"{tuple(weight.shape)} but {why}; is it a network for another model family?"
        )
