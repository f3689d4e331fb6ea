"""The README's LoRA picture: the same demo inpaint without and with ``<lora:red_to_blue:1>``.

    .venv/bin/python tools/demo/lora_before_after.py docs/demo_lora_before_after.png

Runs the README's main job (scene1, its mask, "a large red circle", seed 1, 20 steps, Euler a,
denoise 1.0, masked content fill) twice on the bundled demo model, once with the bundled demo LoRA
``red_to_blue`` (``src/retouch/demo/networks/lora``) named in the prompt, and lays out scene, mask,
plain result and LoRA result side by side (``before_after.compose``). Prints the mean RGB of the masked
area of each result, so the effect is a number too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import EXAMPLES, compose  # noqa: E402

LORA_DIR = EXAMPLES.parent / "networks" / "lora"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", type=Path)
    args = ap.parse_args()
    from retouch import Engine, Img2Img, MaskedContent, load_model

    scene, mask = Image.open(EXAMPLES / "scene1.png").convert("RGB"), Image.open(EXAMPLES / "scene1_mask.png")
    engine = Engine(load_model("demo"), lora_dir=LORA_DIR)
    outputs = []
    for prompt in ("a large red circle", "a large red circle <lora:red_to_blue:1>"):
        job = Img2Img(prompt=prompt, init_images=[scene], mask=mask, seed=1, steps=20, sampler_name="Euler a",
                      denoising_strength=1.0, inpainting_fill=MaskedContent.FILL, width=scene.width,
                      height=scene.height, inpaint_full_res=False, cfg_scale=7.0)
        image = engine.run(job).images[0]
        inside = np.asarray(mask.convert("L")) > 127
        print(f"{prompt!r}: mean RGB in the mask {np.asarray(image)[inside].mean(axis=0).round(1).tolist()}")
        outputs.append(image)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    compose([scene, mask, *outputs]).save(args.target, optimize=True)
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
