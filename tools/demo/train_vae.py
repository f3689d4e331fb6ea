"""Train the demo model's AutoencoderKL (encoder and decoder) from PyTorch's default initialisation.

Usage (resumes from ``--work``; writes ``vae_final.pt`` there, which ``train.py`` then uses)::

    .venv/bin/python tools/demo/train_vae.py --work runs/demo3 --minutes 45

Data: random ``--crop``-pixel crops of the training scenes (``images.npy``, rendered by ``train.py``'s data
stage), flipped at random, and on a quarter of them thin lines and text-like marks drawn on top (so the
autoencoder also meets detail the scene family lacks). Loss: L1 + MSE + 1e-6 KL (the SD recipe without
the GAN and LPIPS terms). AdamW, 100 warm-up steps, then constant, then a cosine decay to 1/10 over the
last 30% of the time budget. An EMA of the weights is kept and exported. bf16 autocast is used where
oneDNN runs bf16 natively (``--bf16 auto``); elsewhere fp32 (emulated bf16 is ~100x slower).

Every ``--eval-minutes`` the EMA is evaluated on 32 held-out scenes at full size (posterior mode): mean
and min PSNR go to ``log.txt`` and ``vae_curve.json`` (the record behind tools/demo/README.md's account
of why earlier runs "stalled").
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402
from train import atomic_save, log, normalise_latents, stage_data, to_tensor, use_bf16  # noqa: E402

import models  # noqa: E402

EVAL_STEPS = (1, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000)


def marks(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``crop`` (H, W, 3 uint8) with 1-4 thin lines and a few text-like strokes drawn on it."""
    img = Image.fromarray(crop)
    draw = ImageDraw.Draw(img)
    side = crop.shape[0]
    for _ in range(int(rng.integers(1, 5))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        pts = [tuple(float(v) for v in rng.uniform(0, side, 2)) for _ in range(2)]
        draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
    if rng.random() < 0.5:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = rng.uniform(0, side * 0.6, 2)
        text = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(2, 7))))
        draw.text((float(x), float(y)), text, fill=colour)
    return np.asarray(img)


def batch(images: np.ndarray, rng: np.random.Generator, size: int, crop: int) -> torch.Tensor:
    idx = np.sort(rng.integers(0, len(images), size))
    out = []
    for i in idx:
        y, x = rng.integers(0, dataset.SIZE - crop + 1, 2)
        c = np.asarray(images[i, y:y + crop, x:x + crop])
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.5:
            c = c[::-1]
        c = np.ascontiguousarray(c)
        if rng.random() < 0.25:
            c = marks(c, rng)
        out.append(c)
    return to_tensor(np.stack(out))


@torch.no_grad()
def evaluate(vae: torch.nn.Module, val: torch.Tensor) -> tuple[float, float]:
    """Mean and min PSNR (dB) of decode(mode(encode(x))) over the held-out scenes, in fp32."""
    vals = []
    for start in range(0, len(val), 8):
        x = val[start:start + 8]
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.float().clamp(-1, 1)
        mse = ((rec - x) / 2).pow(2).mean(dim=(1, 2, 3))
        vals += [10 * math.log10(1.0 / max(m, 1e-10)) for m in mse.tolist()]
    return float(np.mean(vals)), float(np.min(vals))


def vae_loss(vae: torch.nn.Module, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """L1 + MSE of the reconstruction from a posterior sample, + 1e-6 KL (bf16 autocast if asked)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
    rec = rec.float()
    return F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * post.kl().float().mean()


def lr_at(args: argparse.Namespace, step: int, elapsed: float) -> float:
    warm = min(1.0, (step + 1) / 100)
    frac = elapsed / (args.minutes * 60)
    if frac < 0.7:
        return args.lr * warm
    t = min(1.0, (frac - 0.7) / 0.3)
    return args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/demo3"))
    ap.add_argument("--images", type=int, default=16000)
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--eval-minutes", type=float, default=3.0)
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument("--psnr", type=float, default=99.0, help="stop early at this held-out mean PSNR (dB)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    bf16 = use_bf16(args.bf16)
    images = stage_data(work, args.images)
    vae = models.build_vae()
    ema = copy.deepcopy(vae).requires_grad_(False)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ckpt, curve_path = work / "vae_ckpt.pt", work / "vae_curve.json"
    step, elapsed, curve = 0, 0.0, []
    rng = np.random.default_rng(7)
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, elapsed, curve = state["step"], state["elapsed"], state["curve"]
        rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["rng"])
    val = to_tensor(dataset.build_images(32, "heldout"))
    log(work, f"vae: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters, bf16 {bf16}, "
              f"cpu {torch.backends.cpu.get_cpu_capability()}, threads {args.threads}, from step {step}")
    t_start = time.time() - elapsed
    t_ckpt = t_eval = time.time()

    def record() -> None:
        ema_mean, ema_min = evaluate(ema, val)
        raw_mean, _ = evaluate(vae, val)
        curve.append({"step": step, "minutes": round(elapsed / 60, 2), "ema_psnr": round(ema_mean, 2),
                      "ema_min": round(ema_min, 2), "raw_psnr": round(raw_mean, 2)})
        curve_path.write_text(json.dumps(curve, indent=1))
        log(work, f"vae step {step} {elapsed / 60:.1f} min: held-out psnr ema {ema_mean:.2f} (min {ema_min:.2f}) "
                  f"raw {raw_mean:.2f} dB")

    vae.train()
    while elapsed < args.minutes * 60:
        x = batch(images, rng, args.batch, args.crop)
        lr = lr_at(args, step, elapsed)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = vae_loss(vae, x, bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), vae.parameters(), strict=True):
                e.lerp_(p, 1.0 - decay)
        elapsed = time.time() - t_start
        if step % 50 == 0:
            log(work, f"vae step {step} loss {loss.item():.4f} lr {lr:.1e} {elapsed / 60:.1f} min")
        if step in EVAL_STEPS or time.time() - t_eval > args.eval_minutes * 60:
            record()
            t_eval = time.time()
            if curve[-1]["ema_psnr"] >= args.psnr:
                break
        if time.time() - t_ckpt > args.ckpt_minutes * 60:
            atomic_save({"model": vae.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                         "elapsed": elapsed, "curve": curve, "np_rng": rng.bit_generator.state,
                         "rng": torch.get_rng_state()}, ckpt)
            t_ckpt = time.time()
    record()
    atomic_save({"model": vae.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                 "elapsed": elapsed, "curve": curve, "np_rng": rng.bit_generator.state,
                 "rng": torch.get_rng_state()}, ckpt)
    ema.eval()
    normalise_latents(ema, images)
    mean, low = evaluate(ema, val)
    log(work, f"vae done: step {step}, {elapsed / 60:.1f} min, normalised held-out psnr {mean:.2f} (min {low:.2f}) dB")
    atomic_save(ema.state_dict(), work / "vae_final.pt")
    (work / "vae_stats.json").write_text(json.dumps({"steps": step, "minutes": elapsed / 60, "psnr_db": mean,
                                                     "psnr_min_db": low}))


if __name__ == "__main__":
    main()
