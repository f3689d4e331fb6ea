"""Server test helpers: one tiny model per session, apps built around it, base64 test images."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from retouch.engine import Engine
from retouch.server import ServerConfig, create_app
from retouch.testing import tiny_model


@pytest.fixture(scope="session")
def tiny() -> Any:
    return tiny_model(seed=0, family="sd1")


@pytest.fixture(scope="session")
def engine(tiny: Any) -> Engine:
    """One engine for the whole session (the engine casts the model in place; share it)."""
    return Engine(tiny, device="cpu", precision="fp32")


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def b64(image: Image.Image, *, prefix: bool = False, fmt: str = "PNG") -> str:
    data = base64.b64encode(png_bytes(image, fmt)).decode()
    return f"data:image/{fmt.lower()};base64,{data}" if prefix else data


def gradient(w: int = 64, h: int = 64) -> Image.Image:
    """A deterministic RGB test image."""
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def square_mask(w: int = 64, h: int = 64, box: tuple[int, int, int, int] = (16, 16, 48, 48)) -> Image.Image:
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, box)
    return mask


def decode(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def payload(**changes: Any) -> dict[str, Any]:
    """A small, fast img2img body (64x64, 3 steps, fixed seed)."""
    body: dict[str, Any] = {
        "prompt": "a red square", "init_images": [b64(gradient())], "width": 64, "height": 64, "steps": 3,
        "seed": 1234, "cfg_scale": 7.0,
    }
    body.update(changes)
    return body


class GatedEngine:
    """Wraps a real engine; pauses the sampler at ``gate_step`` until ``release`` is called.

    Lets a test act (interrupt, skip, cancel, poll progress) at a known point inside a job. Records
    every (job_no, step) the engine reported.
    """

    def __init__(self, inner: Engine, gate_step: int = 2) -> None:
        self.inner = inner
        self.model = inner.model
        self.gate_step = gate_step
        self.reached = threading.Event()
        self._go = threading.Event()
        self.steps: list[tuple[int, int]] = []
        self.preview = inner.preview

    def release(self) -> None:
        self._go.set()

    def run(self, job: Any, on_step: Callable[..., None] | None = None, should_stop: Any = None,
            should_skip: Any = None) -> Any:
        def step(info: Any) -> None:
            self.steps.append((info.job_no, info.step))
            if on_step is not None:
                on_step(info)
            if info.step == self.gate_step and not self._go.is_set():
                self.reached.set()
                assert self._go.wait(30), "test never released the gate"

        return self.inner.run(job, on_step=step, should_stop=should_stop, should_skip=should_skip)


@pytest.fixture
def make_client(engine: Engine) -> Iterator[Callable[..., TestClient]]:
    """``make_client(engine=None, **config)``: a started TestClient (closed after the test)."""
    clients: list[TestClient] = []

    def make(engine_override: Any = None, **config: Any) -> TestClient:
        app = create_app(engine=engine_override or engine, config=ServerConfig(**config))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
