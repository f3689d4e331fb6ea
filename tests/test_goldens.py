"""Golden 3x3 slices of fixed tiny-model jobs (regenerate only with tools/regen_goldens.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from golden_jobs import SCENARIOS, run_scenario

GOLDENS = json.loads((Path(__file__).parent / "goldens" / "engine_slices.json").read_text())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_slice(name: str) -> None:
    got = np.array(run_scenario(name), dtype=np.int16)
    want = np.array(GOLDENS[name], dtype=np.int16)
    # uint8 outputs: one level of slack for float differences across CPUs
    assert np.abs(got - want).max() <= 1, (name, got.tolist())
