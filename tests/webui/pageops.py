"""What a person does on the page, as Playwright steps: open an image, paint, generate, read results."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image


def open_image(page: Any, path: Path) -> None:
    page.set_input_files("#image-file", str(path))
    page.wait_for_function("document.getElementById('input-size').textContent.includes('×')")


def set_field(page: Any, name: str, value: Any) -> None:
    page.fill(f"#f-{name.replace('.', '-')}", str(value))


def paint(page: Any, points: list[tuple[float, float]], image_size: tuple[int, int]) -> None:
    """Drag the mouse through ``points`` given in image pixels."""
    box = page.locator("#overlay-canvas").bounding_box()
    sx, sy = box["width"] / image_size[0], box["height"] / image_size[1]
    to_page = [(box["x"] + x * sx, box["y"] + y * sy) for x, y in points]
    page.mouse.move(*to_page[0])
    page.mouse.down()
    for p in to_page[1:]:
        page.mouse.move(*p, steps=6)
    page.mouse.up()
    page.wait_for_function("document.getElementById('mask-info').textContent.includes('painted')")


def brush(page: Any, size: int, hardness: float) -> None:
    page.locator("#brush-size").fill(str(size))
    page.locator("#brush-hardness").fill(str(hardness))


def results(page: Any) -> int:
    return int(page.locator("#gallery figure").count())


def generate(page: Any, *, press_enter_in: str | None = None) -> None:
    """Generate and wait until the job's card is final and (when it succeeded) its images are shown."""
    before = page.locator("#jobs li.job").count()
    if press_enter_in:
        page.focus(press_enter_in)
        page.keyboard.press("Enter")
    else:
        page.click("#generate")
    page.wait_for_function(f"document.querySelectorAll('#jobs li.job').length > {before}")
    page.wait_for_selector("#jobs li.job:first-child[data-status=done], #jobs li.job:first-child[data-status=failed]",
                           timeout=120_000)


def image_of(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    return image


def latest_result(page: Any) -> Image.Image:
    return image_of(page.locator("#gallery figure img").first.get_attribute("src"))


def drop_file(page: Any, selector: str, data: bytes, name: str, mime: str = "image/png") -> None:
    """Drop a file on the element, as dragging it from the desktop does."""
    payload = base64.b64encode(data).decode()
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: mime }));
            return dt;
        }""",
        [payload, name, mime],
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})
