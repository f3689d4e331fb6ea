"""Why the earlier from-scratch VAE runs "stalled": short races of one setting changed at a time.

    .venv/bin/python tools/demo/vae_ablation.py --work runs/demo3 --steps 300 --threads 1

Each race trains a fresh AutoencoderKL (seed 0, PyTorch's default initialisation) on train_vae.py's crops
for ``--steps`` steps and prints held-out PSNR (32 scenes, full size, posterior mode, no EMA) at fixed
steps. "old" is the setting of the stalled runs (widths 16-128 with 4 GroupNorm groups, batch 8, AdamW
1e-3 without warm-up or clipping); "new" is train_vae.py's; the others change one thing from "old".
The record is in tools/demo/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402
from train import to_tensor, use_bf16  # noqa: E402
from train_vae import batch, evaluate, vae_loss  # noqa: E402

import models  # noqa: E402

OLD = dict(widths=(16, 32, 64, 128), groups=4, batch=8, lr=1e-3, warmup=1, clip=0.0)
RACES = {
    "old": OLD,
    "old+warmup+clip": {**OLD, "warmup": 100, "clip": 1.0},
    "old+lr5e-4": {**OLD, "lr": 5e-4},
    "old+widths32": {**OLD, "widths": (32, 64, 128, 128), "groups": 8},
    "old+batch16": {**OLD, "batch": 16},
    "new": dict(widths=(32, 64, 128, 128), groups=8, batch=16, lr=5e-4, warmup=100, clip=1.0),
}
RACES["new-batch8"] = {**RACES["new"], "batch": 8}
CHECKS = (50, 100, 200, 300, 500, 1000)


def race(name: str, cfg: dict, images: np.ndarray, val: torch.Tensor, steps: int, bf16: bool) -> None:
    torch.manual_seed(0)
    vae = models.build_vae(block_out_channels=list(cfg["widths"]), norm_num_groups=cfg["groups"])
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], betas=(0.9, 0.99), weight_decay=0.0)
    rng = np.random.default_rng(7)
    t0, marks = time.time(), []
    for step in range(1, steps + 1):
        x = batch(images, rng, cfg["batch"], 64)
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * min(1.0, step / cfg["warmup"])
        loss = vae_loss(vae, x, bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["clip"]:
            torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg["clip"])
        opt.step()
        if step in CHECKS or step == steps:
            marks.append(f"{step}: {evaluate(vae, val)[0]:.1f}")
    print(f"{name:18s} {'  '.join(marks)} dB   ({time.time() - t0:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/demo3"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=list(RACES))
    ap.add_argument("--bf16", choices=["auto", "off"], default="auto")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bf16 = use_bf16(args.bf16)
    print(f"cpu {torch.backends.cpu.get_cpu_capability()}, bf16 {bf16}, {args.steps} steps, held-out PSNR at steps")
    images = np.load(args.work / "images.npy", mmap_mode="r")
    val = to_tensor(dataset.build_images(32, "heldout"))
    for name in args.only:
        race(name, RACES[name], images, val, args.steps, bf16)


if __name__ == "__main__":
    main()
