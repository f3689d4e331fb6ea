"""A bounded least-recently-used map with hit and miss counts, and an exact key for pixel arrays.

The runtime keeps two of these per Engine (text encodings; VAE posteriors, issue #17 item 4): no
module-level cache exists, so two Engines never share or race on one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

import numpy as np

from retouch.params import ParamError

__all__ = ["LRU", "array_key"]

V = TypeVar("V")


class LRU(Generic[V]):
    """At most ``size`` entries; the least recently used one is dropped first. ``size=0`` stores nothing.

    ``hits`` and ``misses`` count ``get`` calls since construction (callers take differences per job).
    """

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ParamError(f"cache size must be a whole number >= 0 (0 turns the cache off); got {size!r}")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> V | None:
        """The value stored under ``key`` (now the most recent), or None, counting a hit or a miss."""
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        self.misses += 1
        return None

    def put(self, key: Hashable, value: V) -> None:
        if self.size == 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def array_key(array: np.ndarray) -> tuple[tuple[int, ...], str, bytes]:
    """Shape, dtype and a BLAKE2b-256 digest of ``array``'s bytes: equal keys mean byte-identical arrays."""
    data = np.ascontiguousarray(array)
    return data.shape, data.dtype.str, hashlib.blake2b(data.data.cast("B"), digest_size=32).digest()
