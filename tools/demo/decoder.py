"""Fine-tune the demo VAE's decoder (encoder frozen) while the UNet trains, as SD's ft-MSE VAE did.

    .venv/bin/python tools/demo/decoder.py --work runs/demo --minutes 60

The UNet only sees the encoder's latents, so improving the decoder afterwards changes nothing it learnt.
Reads ``vae_final.pt`` (the normalised VAE), trains decoder + post_quant_conv on full 128x128 scenes with
L1 + MSE (batch 8, AdamW 1e-4, main path 1/20 of it), and writes ``vae_decoder.pt`` (the whole VAE state) whenever its held-out
PSNR improves (checked every 3 minutes), logging the PSNR to ``log.txt``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402
from train import atomic_save, log, psnr, to_tensor  # noqa: E402
from vae_init import param_groups  # noqa: E402

import models  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/demo"))
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    images = np.load(args.work / "images.npy", mmap_mode="r")
    vae = models.build_vae()
    out = args.work / "vae_decoder.pt"
    vae.load_state_dict(torch.load(out if out.exists() else args.work / "vae_final.pt"))
    vae.requires_grad_(False)
    trainable = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(param_groups(trainable, vae), lr=args.lr, weight_decay=0.0)
    for g in opt.param_groups:
        g["lr"] = args.lr * g["scale"]
    val = to_tensor(dataset.build_images(16, "heldout"))
    best = psnr(vae, val)
    log(args.work, f"decoder: start psnr {best:.2f} dB, lr {args.lr}")
    rng = np.random.default_rng(int(time.time()))
    t0 = t_save = time.time()
    step = 0
    while time.time() - t0 < args.minutes * 60:
        x = to_tensor(np.asarray(images[np.sort(rng.integers(0, len(images), args.batch))]))
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if time.time() - t_save > 180:
            t_save = time.time()
            best = save_if_better(vae, val, best, out)
            log(args.work, f"decoder step {step} psnr {psnr(vae, val):.2f} dB (best {best:.2f})")
    best = save_if_better(vae, val, best, out)
    log(args.work, f"decoder done: {step} steps, best psnr {best:.2f} dB")


def save_if_better(vae: torch.nn.Module, val: torch.Tensor, best: float, out: Path) -> float:
    """Write the VAE to ``out`` when its held-out PSNR beats ``best``; the new best."""
    now = psnr(vae, val)
    if now > best or not out.exists():
        atomic_save(vae.state_dict(), out)
        return max(now, best)
    return best


if __name__ == "__main__":
    main()
