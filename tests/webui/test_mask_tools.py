"""The mask tools as a person uses them: eraser, undo/redo, invert, clear, and mask files under A1111's
rules. Each check reads the mask the page would submit (the job request is answered by the test)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from .conftest import Page, gradient_png
from .pageops import brush, image_of, open_image, paint

pytestmark = pytest.mark.browser


def submitted(page: Any, captured: list[dict[str, Any]]) -> np.ndarray | None:
    """Press Generate and return the mask of the request it sends (None: no mask, img2img)."""
    n = len(captured)
    page.click("#generate")
    page.wait_for_function("document.getElementById('form-error').textContent.includes('captured')")
    page.evaluate("document.getElementById('form-error').textContent = ''")
    assert len(captured) == n + 1
    mask = captured[-1].get("mask")
    return None if mask is None else np.asarray(image_of(mask).convert("L"))


@pytest.fixture
def capture(server: str, open_page: Callable[..., Page]) -> tuple[Any, list[dict[str, Any]]]:
    page = open_page(server).page
    captured: list[dict[str, Any]] = []

    def answer(route: Any) -> None:
        captured.append(json.loads(route.request.post_data))
        route.fulfill(status=422, json={"error": "Test", "detail": "captured by the test"})

    page.route("**/api/v1/jobs", answer)
    return page, captured


def test_eraser_undo_redo_invert_clear(capture: tuple[Any, list[dict[str, Any]]], tmp_path: Path) -> None:
    page, captured = capture
    open_image(page, gradient_png(tmp_path / "in.png"))
    assert submitted(page, captured) is None  # nothing painted: img2img
    brush(page, 16, 1.0)
    paint(page, [(8, 32), (56, 32)], (64, 64))
    painted = submitted(page, captured)
    assert painted[32, 10:54].min() == 255 and painted[5, :].max() == 0
    page.check("input[name=tool][value=eraser]")
    paint(page, [(32, 20), (32, 44)], (64, 64))
    erased = submitted(page, captured)
    assert erased[32, 30:35].max() == 0 and erased[32, 10:20].min() == 255  # a gap where it was erased
    page.click("#undo")
    assert np.array_equal(submitted(page, captured), painted)
    page.click("#redo")
    assert np.array_equal(submitted(page, captured), erased)
    page.click("#invert-mask")
    assert np.array_equal(submitted(page, captured), 255 - erased)
    page.click("#clear-mask")
    assert page.text_content("#mask-info") == "Mask: none (img2img)"
    assert submitted(page, captured) is None


def test_mask_files_follow_a1111_rules(capture: tuple[Any, list[dict[str, Any]]], tmp_path: Path) -> None:
    page, captured = capture
    open_image(page, gradient_png(tmp_path / "in.png"))
    alpha = np.zeros((32, 32), np.uint8)
    alpha[:, :16], alpha[:, 16:] = 100, 200  # alpha is the mask, rounded at 128
    rgba = np.dstack([np.full((32, 32, 3), 255, np.uint8), alpha])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    page.set_input_files("#mask-file", str(tmp_path / "alpha.png"))
    page.locator("#notice", has_text="Mask: alpha.png").wait_for()
    mask = submitted(page, captured)
    assert mask.shape == (64, 64)  # resized to the image
    assert mask[:, :30].max() == 0 and mask[:, 34:].min() == 255
    grey = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    page.set_input_files("#mask-file", str(tmp_path / "grey.png"))
    page.locator("#notice", has_text="Mask: grey.png").wait_for()
    assert np.array_equal(submitted(page, captured), grey)  # luminance, kept soft
