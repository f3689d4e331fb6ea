"""Compose the README's before/after picture from the output of ``make demo``.

    make demo && .venv/bin/python tools/demo/before_after.py outputs/demo docs/demo_before_after.png

Left to right: the example scene, its mask, and the newest PNG in the output folder, each enlarged 2x
(nearest neighbour, so the pixels are the model's) with a 4-pixel white gap.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "retouch" / "demo" / "examples"
SCALE, GAP = 2, 4


def compose(panels: list[Image.Image]) -> Image.Image:
    """``panels`` side by side, each scaled by SCALE, on white."""
    big = [p.convert("RGB").resize((p.width * SCALE, p.height * SCALE), Image.NEAREST) for p in panels]
    width = sum(p.width for p in big) + GAP * (len(big) - 1)
    out = Image.new("RGB", (width, max(p.height for p in big)), "white")
    x = 0
    for p in big:
        out.paste(p, (x, 0))
        x += p.width + GAP
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outputs", type=Path, help="the folder `make demo` wrote (outputs/demo)")
    ap.add_argument("target", type=Path)
    ap.add_argument("--scene", default="scene1")
    args = ap.parse_args()
    pngs = sorted(args.outputs.glob("*.png"), key=lambda p: p.stat().st_mtime)
    if not pngs:
        raise SystemExit(f"no PNG in {args.outputs}: run `make demo` first")
    panels = [Image.open(EXAMPLES / f"{args.scene}.png"), Image.open(EXAMPLES / f"{args.scene}_mask.png"),
              Image.open(pngs[-1])]
    args.target.parent.mkdir(parents=True, exist_ok=True)
    compose(panels).save(args.target, optimize=True)
    print(f"wrote {args.target} from {pngs[-1]}")


if __name__ == "__main__":
    main()
