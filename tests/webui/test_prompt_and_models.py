"""The page's prompt tools, model line, network pickers and connection handling in a real browser,
and one inpainting run on the bundled demo model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouch.engine import Engine
from retouch.models.loading import load_model

from .conftest import Page, gradient_png
from .live import live_server
from .pageops import generate, latest_result, open_image, set_field

pytestmark = pytest.mark.browser

DEMO = Path(__file__).resolve().parents[2] / "src" / "retouch" / "demo" / "examples"


def test_ctrl_up_and_down_change_the_emphasis_of_the_selection(server: str, open_page: Callable[..., Page]) -> None:
    page = open_page(server).page
    prompt = page.locator("#f-prompt")
    prompt.fill("a red hat, blue sky")
    prompt.evaluate("(el) => el.setSelectionRange(2, 9)")  # "red hat"
    prompt.press("Control+ArrowUp")
    assert prompt.input_value() == "a (red hat:1.1), blue sky"
    prompt.press("Control+ArrowUp")
    assert prompt.input_value() == "a (red hat:1.2), blue sky"
    prompt.press("Control+ArrowDown")
    prompt.press("Control+ArrowDown")
    assert prompt.input_value() == "a red hat, blue sky"  # back at weight 1: brackets gone
    prompt.evaluate("(el) => el.setSelectionRange(17, 17)")  # caret inside "sky"
    prompt.press("Control+ArrowDown")
    assert prompt.input_value() == "a red hat, blue (sky:0.9)"
    assert prompt.evaluate("(el) => el.value.slice(el.selectionStart, el.selectionEnd)") == "sky"


def test_model_line_and_network_pickers(server: str, open_page: Callable[..., Page]) -> None:
    page = open_page(server).page
    name = page.text_content("#model-name")
    assert name and name != "…" and page.text_content("#model-hash").startswith("[")
    assert page.locator("#networks").is_hidden()  # no --lora-dir / --embeddings-dir: empty lists

    loras = [{"name": "pixel-art", "alias": "pixel", "path": "/m/pixel-art.safetensors", "metadata": {}}]
    embeddings = {"loaded": {"bad-hands": {"step": None, "shape": 768, "vectors": 2}}, "skipped": {}}
    page.route("**/sdapi/v1/loras", lambda r: r.fulfill(json=loras))
    page.route("**/sdapi/v1/embeddings", lambda r: r.fulfill(json=embeddings))
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#f-prompt").fill("a castle")
    page.click("#loras summary")
    page.click("#lora-list button:text('pixel')")
    page.click("#embeddings summary")
    page.click("#embedding-list button:text('bad-hands')")
    assert page.input_value("#f-prompt") == "a castle, <lora:pixel-art:1>, bad-hands"


def test_a_lost_connection_is_shown_and_recovered_from(
    server: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    p = open_page(server)
    page = p.page
    open_image(page, gradient_png(tmp_path / "in.png"))
    set_field(page, "steps", 2)
    page.context.set_offline(True)
    page.click("#generate")
    page.locator("#form-error", has_text="cannot be reached").wait_for()
    page.locator("#connection", has_text="Connection to the server lost").wait_for()
    page.context.set_offline(False)
    page.locator("#connection").wait_for(state="hidden", timeout=15_000)
    assert "Connection restored" in page.text_content("#notice")
    generate(page)
    assert page.locator("#gallery figure").count() == 1


def test_demo_model_inpaints_the_bundled_example(open_page: Callable[..., Page]) -> None:
    engine = Engine(load_model("demo"), device="cpu", precision="fp32")
    with live_server(engine) as url:
        page = open_page(url).page
        open_image(page, DEMO / "scene1.png")
        page.set_input_files("#mask-file", str(DEMO / "scene1_mask.png"))
        page.wait_for_function("document.getElementById('mask-info').textContent.includes('painted')")
        set_field(page, "prompt", "a large red circle")
        page.select_option("#f-sampler_name", json.dumps("Euler a"))
        set_field(page, "steps", 20)
        set_field(page, "seed", 1)
        set_field(page, "denoising_strength", 1)
        page.check("#f-inpainting_fill-0")  # masked content: fill
        generate(page)
        out = np.asarray(latest_result(page).convert("RGB"), dtype=np.int16)
    mask = np.asarray(Image.open(DEMO / "scene1_mask.png").convert("L")) > 127
    red = np.all(np.abs(out[mask] - np.array((215, 35, 35))) < 60, axis=1).mean()
    green = np.all(np.abs(out[mask] - np.array((30, 160, 50))) < 40, axis=1).mean()
    # the triangle became a red blob: the demo v2 model (step 2,508) paints a disc over 26% of the mask box
    # here in fp32, so the bound is tests/test_demo_model.py's "a large part of the mask" (> 20%)
    assert out.shape == (128, 128, 3) and red > 0.2 and green < 0.02
