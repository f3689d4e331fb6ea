"""CLI test helpers: one tiny model per session, small input images, an in-process runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouch.cli import main


@dataclass
class Run:
    code: int
    out: str
    err: str


class Loader:
    """A model loader returning the tiny model and counting calls."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.calls: list[tuple[str, object]] = []

    def __call__(self, model: str, vae: object) -> object:
        self.calls.append((model, vae))
        return self.model


@pytest.fixture(scope="session")
def tiny() -> object:
    from retouch.testing import tiny_model

    return tiny_model(seed=0)


@pytest.fixture
def loader(tiny: object) -> Loader:
    return Loader(tiny)


@pytest.fixture
def cli(loader: Loader, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``cli("img2img", "in.png", ...)`` runs ``main`` in-process; returns code, stdout, stderr."""

    def run(*argv: str | Path) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in argv], model_loader=loader)  # type: ignore[arg-type]
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def noise_image(path: Path, size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


def box_mask(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> Path:
    m = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    Image.fromarray(m).save(path)
    return path
