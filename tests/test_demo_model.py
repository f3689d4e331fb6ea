"""The shipped demo models load like a user's checkpoints and inpaint the bundled example.

``demo`` is the text-to-image model (inpainting through A1111's per-step latent blend), ``demo-inpaint``
its 9-channel variant (SD 1.5-inpainting layout). Both run the README's main command: scene1 (a green
triangle on yellow), its mask, "a large red circle", Euler a, 20 steps, denoise 1.0, masked content
"fill", seed 1.
"""

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
FAMILY = {"demo": "sd1", "demo-inpaint": "sd1-inpaint"}


def _nearest(rgb: np.ndarray) -> str:
    return min(PALETTE, key=lambda k: float(np.sum((np.array(PALETTE[k]) - rgb) ** 2)))


@pytest.fixture(scope="module", params=["demo", "demo-inpaint"])
def inpainted(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    name = request.param
    model = load_model(name)
    assert model.family.name == FAMILY[name] and model.name == name
    digest = hashlib.sha256((DEMO / f"{name}.safetensors").read_bytes()).hexdigest()
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


def test_the_triangle_becomes_a_red_shape(inpainted: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    src, masked, out = inpainted
    assert _nearest(src[masked].mean(axis=0)) in ("green", "yellow")  # the green triangle on yellow
    green = np.all(np.abs(out[masked] - np.array(PALETTE["green"])) < 40, axis=1).mean()
    assert green < 0.02  # the triangle is gone
    names = [_nearest(p) for p in out[masked]]
    assert names.count("red") > 0.2 * masked.sum()  # a large part of the mask is now red
