"""Fixtures for model-loading tests: tiny random checkpoints of every family, written in LDM layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from retouch.models.bundle import ModelBundle
from retouch.models.families import FAMILIES
from retouch.models.ldm_layout import save_ldm_checkpoint
from retouch.models.loading import load_model
from retouch.testing import tiny_model


@pytest.fixture(autouse=True)
def _private_hash_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test hashes into its own cache folder, never the user's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RETOUCH_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def originals() -> dict[str, ModelBundle]:
    """The tiny models (seed 0) whose weights the checkpoints hold, built directly in diffusers."""
    return {name: tiny_model(0, name) for name in FAMILIES}


@pytest.fixture(scope="session")
def checkpoints(originals: dict[str, ModelBundle], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One LDM-layout ``.safetensors`` per family (configs embedded in the metadata)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for name, bundle in originals.items():
        paths[name] = folder / f"tiny-{name}.safetensors"
        save_ldm_checkpoint(bundle, paths[name])
    return paths


@pytest.fixture(scope="session")
def loaded(checkpoints: dict[str, Path]) -> Callable[[str], ModelBundle]:
    """``loaded(name)``: the family's checkpoint through ``load_model``, loaded once per session (read only)."""
    cache: dict[str, ModelBundle] = {}

    def get(name: str) -> ModelBundle:
        if name not in cache:
            cache[name] = load_model(checkpoints[name])
        return cache[name]

    return get
