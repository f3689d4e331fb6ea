"""Write the README's example scenes and masks (held-out scenes, never seen in training).

    .venv/bin/python tools/demo/make_examples.py src/retouch/demo/examples

Each ``sceneN.png`` is a 128x128 held-out scene with one large shape; ``sceneN_mask.png`` is a 56x56
white square (the region to repaint) centred on that shape; ``prompts.txt`` lists each scene's caption
and a suggested inpainting prompt that asks for a different colour.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402

MASK_SIDE = 56


def example_scenes(count: int) -> list[dataset.Scene]:
    """The first ``count`` held-out scenes with exactly one large shape, near the centre of the picture."""
    found, i = [], 70_000
    while len(found) < count:
        scene = dataset.draw_scene(i, "heldout")
        large = [s for s in scene.shapes if s.size == "large"]
        if len(large) == 1 and len(scene.shapes) >= 2 and scene.style != "textured":
            found.append(scene)
        i += 1
    return found


def mask_for(shape: dataset.Shape) -> Image.Image:
    left = int(round(min(max(shape.cx - MASK_SIDE / 2, 0), dataset.SIZE - MASK_SIDE)))
    top = int(round(min(max(shape.cy - MASK_SIDE / 2, 0), dataset.SIZE - MASK_SIDE)))
    m = np.zeros((dataset.SIZE, dataset.SIZE), np.uint8)
    m[top:top + MASK_SIDE, left:left + MASK_SIDE] = 255
    return Image.fromarray(m, mode="L")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--count", type=int, default=3)
    args = ap.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    lines = []
    wanted = ["red", "blue", "yellow", "green", "orange", "purple"]
    for n, scene in enumerate(example_scenes(args.count), start=1):
        shape = next(s for s in scene.shapes if s.size == "large")
        Image.fromarray(dataset.render(scene)).save(args.outdir / f"scene{n}.png")
        mask_for(shape).save(args.outdir / f"scene{n}_mask.png")
        used = {scene.background, *(s.colour for s in scene.shapes)}
        colour = next(c for c in wanted if c not in used)
        lines.append(f"scene{n}.png\t{dataset.full_caption(scene)}\tinpaint: a large {colour} circle")
    (args.outdir / "prompts.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
