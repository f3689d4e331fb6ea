"""runtime.set_threads: the CLI's and server's --threads."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from retouch.params import ParamError
from retouch.runtime import set_threads


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_none_leaves_torch_alone() -> None:
    torch.set_num_threads(1)
    assert set_threads(None) == 1 and torch.get_num_threads() == 1


def test_a_count_is_applied() -> None:
    cores = os.cpu_count() or 1
    assert set_threads(cores) == cores and torch.get_num_threads() == cores
    assert set_threads(1) == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 10_000, True, 1.5, "2"])
def test_bad_counts_name_the_allowed_range(bad: object) -> None:
    torch.set_num_threads(1)
    with pytest.raises(ParamError, match=rf"threads must be a whole number from 1 to {os.cpu_count()}"):
        set_threads(bad)  # type: ignore[arg-type]
    assert torch.get_num_threads() == 1
