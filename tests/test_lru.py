"""The bounded LRU map and the exact array key behind the runtime's caches."""

from __future__ import annotations

import numpy as np
import pytest

from retouch.lru import LRU, array_key
from retouch.params import ParamError


def test_holds_at_most_size_entries_and_drops_the_least_recent() -> None:
    lru: LRU[int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "a" is now the most recent
    lru.put("c", 3)
    assert len(lru) == 2 and lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3
    assert (lru.hits, lru.misses) == (3, 1)


def test_size_zero_stores_nothing() -> None:
    lru: LRU[int] = LRU(0)
    lru.put("a", 1)
    assert len(lru) == 0 and lru.get("a") is None and lru.misses == 1


@pytest.mark.parametrize("size", [-1, 1.5, True, "4"])
def test_a_bad_size_is_refused(size: object) -> None:
    with pytest.raises(ParamError, match="0 turns the cache off"):
        LRU(size)  # type: ignore[arg-type]


def test_array_key_is_equal_only_for_the_same_bytes_shape_and_dtype() -> None:
    a = np.random.default_rng(0).random((4, 6, 3), dtype=np.float32)
    assert array_key(a) == array_key(a.copy())
    b = a.copy()
    b[3, 5, 2] = np.nextafter(b[3, 5, 2], np.float32(2))
    assert array_key(b) != array_key(a)
    assert array_key(a.reshape(6, 4, 3)) != array_key(a)
    assert array_key(a.view(np.int32)) != array_key(a)
    assert array_key(a[:, ::-1]) == array_key(np.ascontiguousarray(a[:, ::-1]))
