"""Train the demo model's inpainting variant (9-channel UNet, the SD 1.5-inpainting layout).

Usage (after train.py has trained the text-to-image model in ``--base``; resumes from ``--work``)::

    .venv/bin/python tools/demo/inpaint.py --base runs/demo3 --work runs/demo3-inpaint --unet-minutes 20 \
        --init runs/demo3/export_diffusers.pt --threads 2

The VAE, images and latents are the base run's. For every training image a random mask is drawn (a
pure function of the image index: a box around one of its shapes, a random rectangle or ellipse, two
rectangles, or the whole image), the masked image ``image * (1 - mask)`` in [-1, 1] is encoded (as the
engine's 9-channel conditioning does: spec a1111-img2img.md §4.1 with inpainting_mask_weight 1), and
the mask is sampled to latent size the way the engine does (nearest). The UNet is started from the
base model with zero weights on the five extra input channels and trained with train.py's loop.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402
import train  # noqa: E402

import models  # noqa: E402


def random_mask(index: int) -> np.ndarray:
    """The training mask of image ``index`` (SIZE x SIZE float32, 1 = repaint), drawn from its own seed."""
    rng = np.random.default_rng([index, 9])
    scene = dataset.draw_scene(index)
    img = Image.new("L", (dataset.SIZE, dataset.SIZE), 0)
    draw = ImageDraw.Draw(img)
    kind = rng.choice(["shape", "rect", "ellipse", "two", "full"], p=[0.45, 0.2, 0.15, 0.12, 0.08])
    side = dataset.SIZE
    if kind == "full":
        return np.ones((side, side), np.float32)
    if kind == "shape":
        s = scene.shapes[int(rng.integers(len(scene.shapes)))]
        pad = rng.uniform(2, 16)
        r = s.radius + pad
        draw.rectangle([s.cx - r, s.cy - r, s.cx + r, s.cy + r], fill=255)
    else:
        for _ in range(2 if kind == "two" else 1):
            w, h = rng.uniform(16, 80, 2)
            x, y = rng.uniform(0, side - w), rng.uniform(0, side - h)
            box = [float(x), float(y), float(x + w), float(y + h)]
            (draw.ellipse if kind == "ellipse" else draw.rectangle)(box, fill=255)
    return (np.asarray(img) > 127).astype(np.float32)


def stage_masked(work: Path, vae: torch.nn.Module, images: np.ndarray, count: int) -> dict[str, torch.Tensor]:
    path = work / "masked.pt"
    if not path.exists():
        t0 = time.time()
        means, stds, masks = [], [], []
        with torch.no_grad():
            for start in range(0, count, 64):
                idx = range(start, min(start + 64, count))
                m = torch.from_numpy(np.stack([random_mask(i) for i in idx]))[:, None]
                x = train.to_tensor(np.asarray(images[start:start + len(idx)]))
                dist = vae.encode(x * (1.0 - m)).latent_dist
                means.append(dist.mean.float().half())
                stds.append(dist.std.float().half())
                masks.append(F.interpolate(m, size=(16, 16)).half())  # nearest, as the engine samples it
        train.atomic_save({"mean": torch.cat(means), "std": torch.cat(stds), "mask": torch.cat(masks)}, path)
        train.log(work, f"masked: {count} masks and masked-image latents in {time.time() - t0:.0f}s")
    return torch.load(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=Path("runs/demo3"))
    ap.add_argument("--work", type=Path, default=Path("runs/demo3-inpaint"))
    ap.add_argument("--count", type=int, default=16000)
    train.add_unet_arguments(ap, minutes=20, lr=4e-4, warmup=50, threads=2)
    ap.add_argument("--init", default="", help="the base run's export_diffusers.pt (default: <base>/export_diffusers.pt)")
    args = ap.parse_args()
    args.init = args.init or str(args.base / "export_diffusers.pt")
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    args.work.mkdir(parents=True, exist_ok=True)
    train.log(args.work, f"start: {vars(args)}")
    images = np.load(args.base / "images.npy", mmap_mode="r")
    vae = models.build_vae()
    vae.load_state_dict(torch.load(args.base / "vae_final.pt"))
    vae.eval().requires_grad_(False)
    latents = torch.load(args.base / "latents.pt")
    count = min(args.count, len(latents["mean"]))
    masked = stage_masked(args.work, vae, images, count)
    train.stage_unet(args.work, vae, (latents["mean"][:count], latents["std"][:count]), args, masked)


if __name__ == "__main__":
    main()
