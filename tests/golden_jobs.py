"""Fixed tiny-model jobs whose 3x3 output slices are pinned in tests/goldens (see tools/regen_goldens.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from retouch import Engine, Img2Img, MaskedContent

SIZE = 32


def _scene() -> Image.Image:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([x * 8 % 256, y * 8 % 256, (x + y) * 4 % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def _mask() -> Image.Image:
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    m[10:22, 12:26] = 255
    return Image.fromarray(m, "L")


SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "img2img_euler_a": ("sd1", dict(sampler_name="Euler a")),
    "img2img_dpmpp_2m_karras": ("sd1", dict(sampler_name="DPM++ 2M", scheduler="Karras")),
    "inpaint_whole_fill": ("sd1", dict(mask=True, inpaint_full_res=False, inpainting_fill=MaskedContent.FILL)),
    "inpaint_only_masked": ("sd1", dict(mask=True, inpaint_full_res=True, inpaint_full_res_padding=4)),
    "inpaint_model": ("sd1-inpaint", dict(mask=True, inpaint_full_res=False)),
    "pix2pix": ("pix2pix", dict(image_cfg_scale=1.5)),
}


def run_scenario(name: str) -> list[list[list[int]]]:
    from retouch.testing import tiny_model

    family, extra = SCENARIOS[name]
    kw: dict[str, Any] = dict(prompt="a blue square", negative_prompt="red", init_images=[_scene()], steps=4,
                              width=SIZE, height=SIZE, seed=42, cfg_scale=6.0, denoising_strength=0.8)
    kw.update(extra)
    if kw.pop("mask", False):
        kw["mask"] = _mask()
    torch.set_num_threads(1)
    image = Engine(tiny_model(seed=3, family=family), precision="fp32").run(Img2Img(**kw)).images[0]
    arr = np.asarray(image)
    return arr[14:17, 16:19].tolist()
