"""Browser-test fixtures: the system Chromium through Playwright, a tiny-model server in this process,
and a page that records every request it makes and every script error it hits.

Without /usr/bin/chromium the browser tests are skipped, except on CI (``CI=true``), where that fails
the run. Skip them on purpose with ``-m "not slow and not browser"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from retouch.engine import Engine
from retouch.testing import tiny_model

from .live import CHROMIUM, launch_chromium, live_server


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run on CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium fonts-liberation)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc}); pip install '.[dev]'")
    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine(tiny_model(seed=0, family="sd1"), device="cpu", precision="fp32")


@pytest.fixture
def server(engine: Engine) -> Iterator[str]:
    with live_server(engine) as url:
        yield url


class Page:
    """A Playwright page plus what it did: ``requests`` (every URL), ``errors`` (uncaught script errors)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests: list[Any] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def job_bodies(self) -> list[dict[str, Any]]:
        return [r.post_data_json for r in self.requests if r.method == "POST" and r.url.endswith("/api/v1/jobs")]


@pytest.fixture
def open_page(chromium: Any) -> Iterator[Callable[..., Page]]:
    """``open_page(url, width=1280, height=900)``: a fresh browser context on the page, ready to use.
    Afterwards every request must have gone to 127.0.0.1 and no script error may have happened."""
    pages: list[tuple[Any, Page]] = []

    def open_(url: str, width: int = 1280, height: int = 900) -> Page:
        context = chromium.new_context(viewport={"width": width, "height": height})
        page = Page(context.new_page())
        pages.append((context, page))
        page.page.goto(url)
        page.page.wait_for_selector("body[data-ready=true]")
        return page

    yield open_
    for context, page in pages:
        context.close()
        hosts = {urlsplit(r.url).hostname for r in page.requests if not r.url.startswith(("data:", "blob:"))}
        assert hosts <= {"127.0.0.1"}, f"the page contacted {hosts}"
        assert not page.errors, page.errors


def gradient_png(path: Path, w: int = 64, h: int = 64) -> Path:
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 127 // (w + h - 2)], -1)
    Image.fromarray(arr.astype(np.uint8), "RGB").save(path)
    return path
