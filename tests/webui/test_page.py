"""The web page in a real browser (system Chromium), against a tiny-model server in this process.

Each test checks what a person would check on the page: the painted stroke is what changes, a soft
brush gives grey levels, Interrupt gives a partial image, a dropped PNG restores its settings, the
API's message appears at the field it names, the page stays on 127.0.0.1 and fits a phone.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from retouch.engine import Engine
from retouch.formats.images import encode_png
from retouch.imaging.mask import blur_mask

from .conftest import Page, gradient_png
from .live import live_server
from .pageops import brush, drop_file, generate, image_of, latest_result, open_image, paint, set_field

pytestmark = pytest.mark.browser


def test_inpaint_changes_the_painted_stroke_and_nothing_else(
    server: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    p = open_page(server)
    page = p.page
    source = gradient_png(tmp_path / "in.png")
    open_image(page, source)
    assert page.text_content("#input-size") == "64 × 64 px"
    brush(page, 10, 0.8)
    paint(page, [(12, 30), (32, 34), (52, 30)], (64, 64))
    set_field(page, "prompt", "a red square")
    set_field(page, "steps", 3)
    set_field(page, "seed", 1234)
    generate(page, press_enter_in="#f-seed")  # Enter in a field generates
    body = p.job_bodies()[-1]
    assert (body["width"], body["height"], body["steps"], body["seed"]) == (64, 64, 3, 1234)
    mask = image_of(body["mask"]).convert("L")
    blurred = np.asarray(blur_mask(mask, body["mask_blur"], body["mask_blur"]))
    src = np.asarray(Image.open(source).convert("RGB"), dtype=np.int16)
    out = np.asarray(latest_result(page).convert("RGB"), dtype=np.int16)
    outside, core = blurred == 0, np.asarray(mask) == 255
    assert outside.sum() > 1000 and core.sum() > 200  # a real stroke, far from covering everything
    assert (out[outside] == src[outside]).all()
    assert np.abs(out[core] - src[core]).mean() > 10
    assert "Seed: 1234" in page.text_content("#gallery figure .infotext")


def test_soft_brush_submits_grey_levels_and_hard_brush_almost_none(
    server: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    p = open_page(server)
    page = p.page
    open_image(page, gradient_png(tmp_path / "in.png", 128, 128))
    set_field(page, "steps", 1)

    def submitted_mask(hardness: float) -> np.ndarray:
        page.click("#clear-mask")
        brush(page, 40, hardness)
        paint(page, [(20, 64), (108, 64)], (128, 128))
        generate(page)
        return np.asarray(image_of(p.job_bodies()[-1]["mask"]).convert("L"))

    soft, hard = submitted_mask(0.0), submitted_mask(1.0)
    grey = (soft > 0) & (soft < 255)
    assert soft.max() >= 240 and grey.sum() > 0.5 * (soft > 0).sum()  # a soft edge, most of the stroke
    assert len(np.unique(soft[grey])) > 50  # a ramp, not a few anti-aliasing steps
    assert ((hard > 0) & (hard < 255)).sum() < 0.1 * (hard > 0).sum()


class Gate:
    """An engine that holds at each step in ``at`` until that step is released (so a test can act at
    a known point inside a job)."""

    def __init__(self, inner: Engine, at: tuple[int, ...] = (2,)) -> None:
        self.inner, self.model, self.preview = inner, inner.model, inner.preview
        self.gates = {step: threading.Event() for step in at}
        self.steps: list[int] = []

    def release(self, step: int = 2) -> None:
        self.gates[step].set()

    def run(self, job: Any, on_step: Any = None, **kwargs: Any) -> Any:
        def step(info: Any) -> None:
            self.steps.append(info.step)
            if on_step is not None:
                on_step(info)
            if info.step in self.gates:
                assert self.gates[info.step].wait(60), "the test never released the gate"

        return self.inner.run(job, on_step=step, **kwargs)


def test_a_running_job_shows_its_live_preview(
    engine: Engine, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    gate = Gate(engine, at=(2, 5))
    with live_server(gate) as url:
        page = open_page(url).page
        open_image(page, gradient_png(tmp_path / "in.png"))
        set_field(page, "steps", 8)
        set_field(page, "denoising_strength", 1)
        page.click("#group-more summary")
        set_field(page, "override_settings.show_progress_every_n_steps", 1)
        page.click("#generate")
        card = page.locator("#jobs li.job").first
        card.locator(".job-status", has_text="step 2/8").wait_for()
        # Ask for a preview here too, so that step 3 decodes one whatever the page's timing.
        listing = json.loads(urllib.request.urlopen(f"{url}/api/v1/jobs").read())
        urllib.request.urlopen(f"{url}/api/v1/jobs/{listing['jobs'][0]['id']}/preview").read()
        gate.release(2)
        card.locator(".job-status", has_text="step 5/8").wait_for()
        card.locator(".job-preview").wait_for(state="visible")
        assert card.get_attribute("data-status") == "running"
        src = card.locator(".job-preview").get_attribute("src")
        assert src.startswith("blob:") and card.locator(".job-preview").evaluate("(i) => i.naturalWidth") == 64
        gate.release(5)
        card.locator(".job-status", has_text="done").wait_for()


def test_interrupt_stops_the_job_and_shows_its_partial_image(
    engine: Engine, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    gate = Gate(engine, at=(2,))
    with live_server(gate) as url:
        page = open_page(url).page
        open_image(page, gradient_png(tmp_path / "in.png"))
        set_field(page, "steps", 20)
        set_field(page, "denoising_strength", 1)
        page.click("#generate")
        card = page.locator("#jobs li.job").first
        card.locator(".job-status", has_text="step 2/20").wait_for()
        set_field(page, "steps", 3)
        page.click("#generate")  # a second job waits behind the first, visible with its place
        waiting = page.locator("#jobs li.job").first
        waiting.locator(".job-status", has_text="queued, position 1").wait_for()
        page.locator("#queue-summary", has_text="1 running · 1 waiting").wait_for()
        card = page.locator("#jobs li.job").nth(1)
        card.locator(".job-interrupt").click()
        card.locator(".job-status", has_text="interrupting").wait_for()
        gate.release(2)
        card.locator(".job-status", has_text="interrupted, partial result").wait_for()
        # the interrupted job's figure, wherever the queued job's figure lands (it may finish first)
        figure = page.locator("#gallery figure[data-job]", has=page.locator(".badge")).first
        assert figure.locator(".badge").inner_text() == "interrupted: partial image"
        assert image_of(figure.locator("img").get_attribute("src")).size == (64, 64)
        first = gate.steps[: next((i for i in range(1, len(gate.steps)) if gate.steps[i] <= gate.steps[i - 1]),
                                  len(gate.steps))]
        assert max(first) <= 3  # the first job stopped within one step, not after all 20
        waiting.locator(".job-status", has_text="done").wait_for()
        assert page.locator("#gallery figure .badge").count() == 1  # the second job ran in full


def test_a_dropped_png_restores_its_settings(server: str, open_page: Callable[..., Page], tmp_path: Path) -> None:
    p = open_page(server)
    page = p.page
    a1111 = ("a cat in a hat, (red:1.2)\nNegative prompt: blurry\nSteps: 7, Sampler: Euler a, "
             "Schedule type: Karras, CFG scale: 5.5, Seed: 4242, Size: 96x64, Denoising strength: 0.4, "
             "Mask blur: 6, Inpaint area: Only masked, Version: v1.10.1")
    drop_file(page, "#form", encode_png(Image.new("RGB", (8, 8), "white"), a1111), "a1111.png")
    page.locator("#notice", has_text="Restored").wait_for()
    values = {n: page.input_value(f"#f-{n}") for n in ("prompt", "negative_prompt", "seed", "steps", "cfg_scale",
                                                        "width", "height", "mask_blur")}
    assert values == {"prompt": "a cat in a hat, (red:1.2)", "negative_prompt": "blurry", "seed": "4242",
                      "steps": "7", "cfg_scale": "5.5", "width": "96", "height": "64", "mask_blur": "6"}
    assert page.locator("#f-sampler_name option:checked").inner_text() == "Euler a"
    assert page.is_checked("#f-inpaint_full_res-1") and page.is_checked("#size-to")
    assert page.text_content("#input-size") == "No image"  # settings only; the input is untouched

    # A PNG this server made restores the same way, and settings survive a reload.
    open_image(page, gradient_png(tmp_path / "in.png"))
    page.check("#size-by")
    set_field(page, "seed", 99)
    set_field(page, "steps", 2)
    generate(page)
    made = latest_result(page)
    set_field(page, "seed", 5)
    set_field(page, "steps", 9)
    buf = io.BytesIO()
    made.save(buf, format="PNG", pnginfo=_pnginfo(made))
    drop_file(page, ".gallery-panel", buf.getvalue(), "retouch.png")
    page.wait_for_function("document.getElementById('f-seed').value === '99'")
    assert page.input_value("#f-steps") == "2" and page.input_value("#f-prompt") == "a cat in a hat, (red:1.2)"
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#f-seed") == "99" and page.input_value("#f-negative_prompt") == "blurry"


def _pnginfo(image: Image.Image) -> Any:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", image.info["parameters"])
    return info


def test_a_bad_value_shows_the_api_message_at_its_field(
    server: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    page = open_page(server).page
    open_image(page, gradient_png(tmp_path / "in.png"))
    set_field(page, "steps", 0)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/jobs") and r.request.method == "POST") as resp:
        page.click("#generate")
    assert resp.value.status == 422
    detail = resp.value.json()["detail"]
    error = page.locator("#f-steps-error")
    error.wait_for()
    assert error.inner_text() == detail and detail.startswith("steps must be in [1, ")
    assert page.evaluate("document.activeElement.id") == "f-steps"  # focus goes to the field
    assert page.locator("#jobs li.job").count() == 0
    set_field(page, "steps", 2)
    generate(page)
    assert page.locator("#f-steps-error").is_hidden()


def test_every_request_stays_on_this_server(server: str, open_page: Callable[..., Page], tmp_path: Path) -> None:
    p = open_page(server)
    page = p.page
    open_image(page, gradient_png(tmp_path / "in.png"))
    paint(page, [(20, 20), (40, 40)], (64, 64))
    set_field(page, "steps", 2)
    generate(page)
    paths = {r.url.split("127.0.0.1", 1)[-1].split(":", 1)[-1] for r in p.requests}
    for expected in ("/api/v1/fields", "/sdapi/v1/samplers", "/sdapi/v1/sd-models", "/api/v1/jobs"):
        assert any(path.endswith(expected) for path in paths), expected
    assert any("/events" in path for path in paths) and any(path.endswith(".js") for path in paths)
    external = [r.url for r in p.requests if not r.url.startswith((server, "data:", "blob:"))]
    assert external == []


def test_result_actions_download_reuse_seed_and_send_to_input(
    server: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    page = open_page(server).page
    open_image(page, gradient_png(tmp_path / "in.png", 96, 64))
    set_field(page, "steps", 2)
    set_field(page, "seed", -1)
    generate(page)
    figure = page.locator("#gallery figure").first
    download = image_of(figure.locator("a", has_text="Download PNG").get_attribute("href"))
    seed = int(download.info["parameters"].split("Seed: ", 1)[1].split(",", 1)[0])
    assert seed >= 0  # a random seed was drawn, and the PNG carries its infotext
    figure.locator("button", has_text=f"Reuse seed {seed}").click()
    assert page.input_value("#f-seed") == str(seed)
    page.click("#clear-mask")
    figure.locator("button", has_text="Send to input").click()
    page.locator("#notice", has_text="Input: a result").wait_for()
    shown = page.locator("#image-canvas").evaluate(
        "(c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")
    pixels = np.asarray(shown, dtype=np.uint8).reshape(64, 96, 4)[..., :3]
    assert np.array_equal(pixels, np.asarray(download.convert("RGB")))  # the result is the new input


def test_the_page_fits_a_phone(server: str, open_page: Callable[..., Page], tmp_path: Path) -> None:
    page = open_page(server, width=390, height=844).page

    def no_horizontal_scroll() -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate("window.scrollX") == 0

    no_horizontal_scroll()
    open_image(page, gradient_png(tmp_path / "wide.png", 1024, 512))
    no_horizontal_scroll()
    page.click("#zoom-in")
    page.click("#zoom-in")
    no_horizontal_scroll()  # a zoomed image scrolls inside its own box
    box = page.locator("#generate").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
