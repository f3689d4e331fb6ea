"""Screenshots of the web page on the demo model, for the README: docs/webui_*.png.

Run ``make screenshots`` (or ``.venv/bin/python tools/webui/screenshots.py [outdir]``). It serves the
demo model in this process on a free port, drives the system Chromium (``/usr/bin/chromium``) through
Playwright and writes: ``webui_empty.png`` (the page as it opens), ``webui_mask.png`` (an example with
a mask painted by mouse strokes), ``webui_progress.png`` (a job running, with its live preview),
``webui_results.png`` (finished jobs and their results) and ``webui_phone.png`` (390 px wide).
The demo model runs a step in a few milliseconds, too fast to catch a job half-way, so this script
slows its engine to 0.15 s a step; nothing else differs from ``retouch serve --model demo``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXAMPLES = ROOT / "src" / "retouch" / "demo" / "examples"
STEP_DELAY_S = 0.15


class SlowEngine:
    """The demo engine, ``STEP_DELAY_S`` slower per sampler step (so progress can be photographed)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.model, self.preview = inner, inner.model, inner.preview

    def run(self, job: Any, on_step: Any = None, **kwargs: Any) -> Any:
        def step(info: Any) -> None:
            time.sleep(STEP_DELAY_S)
            if on_step is not None:
                on_step(info)

        return self.inner.run(job, on_step=step, **kwargs)


def _paint(page: Any, strokes: list[list[tuple[float, float]]], size: tuple[int, int]) -> None:
    box = page.locator("#overlay-canvas").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"] / size[0], box["y"] + y * box["height"] / size[1]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for p in points[1:]:
            page.mouse.move(*p, steps=8)
        page.mouse.up()


def _settings(page: Any, prompt: str, seed: int) -> None:
    page.fill("#f-prompt", prompt)
    page.fill("#f-negative_prompt", "blurry")
    page.select_option("#f-sampler_name", json.dumps("Euler a"))
    page.fill("#f-steps", "20")
    page.fill("#f-seed", str(seed))
    page.fill("#f-denoising_strength", "1")
    page.check("#f-inpainting_fill-0")
    page.click("#group-more summary")
    page.fill("#f-override_settings-show_progress_every_n_steps", "3")
    page.click("#group-more summary")


def take(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from retouch.engine import Engine
    from retouch.models.loading import load_model
    from webui.live import launch_chromium, live_server

    out.mkdir(parents=True, exist_ok=True)
    engine = SlowEngine(Engine(load_model("demo"), device="cpu", precision="fp32"))
    shots: list[Path] = []
    with live_server(engine) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, color_scheme="light")
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.evaluate("localStorage.clear()")
        page.reload()
        page.wait_for_selector("body[data-ready=true]")

        def shot(name: str, **kw: Any) -> None:
            path = out / f"webui_{name}.png"
            page.screenshot(path=str(path), **kw)
            shots.append(path)

        shot("empty")
        page.set_input_files("#image-file", str(EXAMPLES / "scene1.png"))
        page.wait_for_function("document.getElementById('input-size').textContent.includes('×')")
        page.fill("#brush-size", "26")
        page.fill("#brush-hardness", "0.3")
        _paint(page, [[(62, 72), (78, 72)], [(54, 86), (86, 86)], [(46, 100), (94, 100)], [(44, 110), (96, 110)]],
               (128, 128))
        _settings(page, "a large red circle", 1)
        page.evaluate("window.scrollTo(0, 0)")
        shot("mask")
        page.click("#generate")
        page.locator("#jobs li.job").first.locator(".job-preview:not([hidden])").wait_for(timeout=60_000)
        page.wait_for_function("document.querySelector('#jobs li.job .job-bar').value > 0.4")
        shot("progress")
        page.locator("#jobs li.job[data-status=done]").wait_for(timeout=120_000)
        page.fill("#f-prompt", "a large blue circle")
        page.fill("#f-seed", "7")
        page.click("#generate")
        page.wait_for_function("document.querySelectorAll('#jobs li.job[data-status=done]').length === 2",
                               timeout=120_000)
        page.set_viewport_size({"width": 1280, "height": 1180})
        page.evaluate("window.scrollTo(0, 0)")
        shot("results")
        page.set_viewport_size({"width": 390, "height": 844})
        page.evaluate("window.scrollTo(0, 0)")
        page.click("#zoom-fit")
        shot("phone")
        browser.close()
    return shots


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    for path in take(target):
        print(path)
