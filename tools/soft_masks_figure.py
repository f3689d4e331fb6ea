"""Draw docs/soft_masks.png: one demo-model inpaint four ways, with the seam magnified.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python tools/soft_masks_figure.py docs/soft_masks.png

The README's job (scene1 + its mask, "a large red circle", Euler a, 20 steps, seed 1, denoise 1, masked
content fill, Whole picture) with mask blur 8, run as: A1111 parity (the defaults), A1111 soft
inpainting, differential diffusion, and Retouch's seam path (cover latent mask, exact paste,
low-frequency seam correction, unmasked pixels exact), without and with the cover latent mask. Top row: the outputs (2x); bottom row: the
mask's top-left edge, 6x (nearest neighbour, so the pixels are the model's). It also prints, per
panel, the mean CIELAB ΔE76 between output and original on the 8-px ring just inside the shown
generated region, and the number of changed pixels where the blurred mask is 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from retouch import Engine, Img2Img, load_model
from retouch.imaging import blur_mask
from retouch.params import DifferentialDiffusion, SoftInpainting

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "retouch" / "demo" / "examples"
PANELS: tuple[tuple[str, dict[str, object]], ...] = (
    ("A1111 parity", {}),
    ("soft inpainting", {"soft_inpainting": SoftInpainting()}),
    ("differential diffusion", {"differential_diffusion": DifferentialDiffusion()}),
    ("seam correction", {"paste_back": "exact", "seam_correction": "lowfreq", "seam_radius": 8,
                         "keep_unmasked_exact": True}),
    ("cover + seam correction", {"latent_mask_mode": "cover", "paste_back": "exact", "seam_correction": "lowfreq",
                                 "seam_radius": 8, "keep_unmasked_exact": True}),
)
SEAM_BOX = (28, 58, 68, 98)  # 40x40 px around the mask's top-left edge
GAP, LABEL = 4, 14


def run_panels(engine: Engine, image: Image.Image, mask: Image.Image) -> list[tuple[str, Image.Image, Image.Image]]:
    """(label, output, overlay mask) per panel."""
    out = []
    for label, extra in PANELS:
        job = Img2Img(prompt="a large red circle", init_images=[image], mask=mask, width=128, height=128, seed=1,
                      steps=20, sampler_name="Euler a", denoising_strength=1.0, inpainting_fill=0,
                      inpaint_full_res=False, mask_blur=8, return_mask=True, **extra)  # type: ignore[arg-type]
        result = engine.run(job)
        out.append((label, result.images[0], result.masks[0].convert("L")))
    return out


def ring_delta_e(original: Image.Image, output: Image.Image, overlay: Image.Image) -> float:
    """Mean ΔE76 over the pixels with α > 0 within 8 px of α = 0 (spec soft-masks.md T11's ring)."""
    inside = (np.asarray(overlay) > 0).astype(np.uint8)
    ring = (inside > 0) & (cv2.distanceTransform(inside, cv2.DIST_L2, 5) <= 8)

    def lab(im: Image.Image) -> np.ndarray:
        return cv2.cvtColor(np.asarray(im.convert("RGB"), dtype=np.float32) / 255, cv2.COLOR_RGB2LAB)

    return float(np.linalg.norm(lab(output) - lab(original), axis=-1)[ring].mean())


def compose(panels: list[tuple[str, Image.Image, Image.Image]]) -> Image.Image:
    tile = 256
    sheet = Image.new("RGB", (len(panels) * (tile + GAP) - GAP, LABEL + 2 * tile + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, image, _) in enumerate(panels):
        x = i * (tile + GAP)
        draw.text((x + 2, 1), label, fill="black")
        sheet.paste(image.resize((tile, tile), Image.Resampling.NEAREST), (x, LABEL))
        seam = image.crop(SEAM_BOX).resize((tile, tile), Image.Resampling.NEAREST)
        sheet.paste(seam, (x, LABEL + tile + GAP))
        bx0, by0, bx1, by1 = (2 * v for v in SEAM_BOX)
        draw.rectangle((x + bx0, LABEL + by0, x + bx1, LABEL + by1), outline="white")
    return sheet


def t11_literal(engine: Engine, image: Image.Image) -> None:
    """Spec T11 as written: strength 0.3, the scene's own ("reconstruct") prompt, a disc mask (r 28)."""
    prompt = (EXAMPLES / "prompts.txt").read_text().splitlines()[0].split("\t")[1]
    y, x = np.mgrid[0:128, 0:128]
    disc = Image.fromarray(((np.hypot(x - 64, y - 64) < 28) * 255).astype(np.uint8))
    for label, extra in (("A1111 parity", {}), ("lowfreq 8 + exact", {"seam_correction": "lowfreq",
                         "seam_radius": 8, "paste_back": "exact"})):
        job = Img2Img(prompt=prompt, init_images=[image], mask=disc, width=128, height=128, seed=1, steps=20,
                      sampler_name="Euler a", denoising_strength=0.3, inpainting_fill=1, inpaint_full_res=False,
                      return_mask=True, **extra)  # type: ignore[arg-type]
        res = engine.run(job)
        print(f"T11 literal, {label:18s} ring dE76 {ring_delta_e(image, res.images[0], res.masks[0].convert('L')):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", type=Path)
    ap.add_argument("--t11", action="store_true", help="also print spec T11 as written (strength 0.3)")
    args = ap.parse_args()
    image = Image.open(EXAMPLES / "scene1.png").convert("RGB")
    mask = Image.open(EXAMPLES / "scene1_mask.png").convert("L")
    engine = Engine(load_model("demo"), precision="fp32")
    if args.t11:
        t11_literal(engine, image)
    panels = run_panels(engine, image, mask)
    outside = np.asarray(blur_mask(mask, 8, 8)) == 0
    for label, output, overlay in panels:
        changed = int((np.asarray(output) != np.asarray(image)).any(axis=-1)[outside].sum())
        print(f"{label:24s} ring dE76 {ring_delta_e(image, output, overlay):.2f}   "
              f"changed pixels outside the blurred mask: {changed}")
    args.target.parent.mkdir(parents=True, exist_ok=True)
    compose(panels).save(args.target)
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
