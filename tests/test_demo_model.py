"""The shipped demo model loads like a user's checkpoint and inpaints the bundled example."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from retouch import Engine, Img2Img, MaskedContent, load_model

DEMO = Path(__file__).resolve().parents[1] / "src" / "retouch" / "demo"
# tools/demo/dataset.py's palette (the colours the model was trained to name)
PALETTE = {
    "red": (215, 35, 35), "green": (30, 160, 50), "blue": (35, 75, 215), "yellow": (245, 215, 30),
    "orange": (245, 130, 20), "purple": (135, 50, 185), "white": (245, 245, 245), "black": (25, 25, 25),
}


def _nearest(rgb: np.ndarray) -> str:
    return min(PALETTE, key=lambda k: float(np.sum((np.array(PALETTE[k]) - rgb) ** 2)))


@pytest.fixture(scope="module")
def inpainted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model = load_model("demo")
    assert model.family.name == "sd1" and model.name == "demo"
    digest = hashlib.sha256((DEMO / "demo.safetensors").read_bytes()).hexdigest()
    assert model.hash == digest[:10]
    image = Image.open(DEMO / "examples" / "scene1.png").convert("RGB")
    mask = Image.open(DEMO / "examples" / "scene1_mask.png").convert("L")
    job = Img2Img(prompt="a large red circle", init_images=[image], mask=mask, width=128, height=128, seed=1,
                  steps=20, sampler_name="Euler a", denoising_strength=1.0, inpainting_fill=MaskedContent.FILL,
                  inpaint_full_res=False)
    out = Engine(model, precision="fp32").run(job).images[0]
    return np.asarray(image, dtype=np.int16), np.asarray(mask) > 127, np.asarray(out, dtype=np.int16)


def test_the_unmasked_area_is_unchanged(inpainted: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    src, masked, out = inpainted
    # Mask blur 4 spreads the overlay up to 10 px (kernel 21) beyond the mask; further out nothing changes.
    grown = Image.fromarray(masked.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(23))
    far = ~np.asarray(grown).astype(bool)
    assert far.sum() > 5000 and (out[far] == src[far]).all()


def test_the_triangle_becomes_a_red_blob(inpainted: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    src, masked, out = inpainted
    assert _nearest(src[masked].mean(axis=0)) in ("green", "yellow")  # the green triangle on yellow
    green = np.all(np.abs(out[masked] - np.array(PALETTE["green"])) < 40, axis=1).mean()
    assert green < 0.02  # the triangle is gone
    names = [_nearest(p) for p in out[masked]]
    assert names.count("red") > 0.3 * masked.sum()  # a large part of the mask is now red ...
    # ... and the rest is the yellow background, red/yellow edge blocks and the purple diamond's corner
    assert set(names) <= {"red", "orange", "yellow", "purple"}
