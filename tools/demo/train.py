"""Train the Retouch demo model on CPU: data -> VAE -> latents -> UNet + text encoder -> export.

Usage (one background job; every stage resumes from its files under ``--work``)::

    .venv/bin/python tools/demo/train.py --work runs/demo2 --unet-minutes 72 --threads 2

Stages:
1. ``data``: render ``--images`` training scenes (dataset.py) into images.npy (uint8).
2. ``vae``: AutoencoderKL from ``vae_init.structured_init`` (8x8 block-average encoder, nearest-upsample
   decoder, 25.8 dB before training); with ``--vae-minutes`` > 0 it is then trained on full 128-px scenes
   (L1 + MSE + 1e-6 KL, main path at 1/20 of the rate) until ``--vae-psnr`` dB or the time is up. The
   shipped model keeps the structured encoder (``--vae-minutes 0``, the default). The latent space is then
   centred and rescaled per channel (an exact reparametrisation of quant_conv / post_quant_conv) so that
   SD1's factor 0.18215 gives unit-variance latents.
3. ``encode``: posterior mean and std of every training image (latents.pt).
4. ``unet``: UNet2DConditionModel + CLIPTextModel trained jointly, epsilon prediction on SD's
   scaled-linear schedule (0.00085 -> 0.012, 1000 steps), min-SNR-5 weighting, 10% empty captions (for
   CFG), AdamW with warmup, EMA, fp32, captions padded to 77 tokens exactly as at inference.
   Checkpoints every ``--ckpt-minutes`` (models, EMA, optimizer, step, RNG, elapsed time).
5. ``export``: EMA weights in diffusers layout (export_diffusers.pt); tools/demo/export.py converts
   them to the single-file LDM checkpoint.
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

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402
from vae_init import param_groups, structured_init  # noqa: E402

import models  # noqa: E402


def use_bf16(choice: str) -> bool:
    """bf16 autocast for ``--bf16`` "on", "off" or "auto" (where oneDNN runs bf16 natively: emulated bf16
    is about 100x slower, so elsewhere fp32)."""
    return choice == "on" or (choice == "auto" and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def add_unet_arguments(ap: argparse.ArgumentParser, *, minutes: float, lr: float, warmup: int, threads: int) -> None:
    """The options of the UNet training loop (``stage_unet``), shared by train.py and inpaint.py."""
    ap.add_argument("--unet-minutes", type=float, default=minutes)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--ckpt-minutes", type=float, default=4)
    ap.add_argument("--export-minutes", type=float, default=10)
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="bf16 autocast for the UNet stage (auto: where oneDNN runs bf16 natively)")


def log(work: Path, msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    with open(work / "log.txt", "a") as fh:
        fh.write(line + "\n")


def atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def stage_data(work: Path, count: int) -> np.ndarray:
    path = work / "images.npy"
    if not path.exists():
        t0 = time.time()
        np.save(work / "images.tmp.npy", dataset.build_images(count))
        (work / "images.tmp.npy").replace(path)
        log(work, f"data: {count} scenes rendered in {time.time() - t0:.0f}s")
    return np.load(path, mmap_mode="r")


def psnr(vae: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.float()
    mse = ((rec.clamp(-1, 1) - x) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def stage_vae(work: Path, images: np.ndarray, args: argparse.Namespace) -> torch.nn.Module:
    minutes, target = args.vae_minutes, args.vae_psnr
    final = work / "vae_final.pt"
    vae = models.build_vae(**vae_overrides(args))
    if final.exists():
        vae.load_state_dict(torch.load(final))
        return vae.eval()
    ckpt = work / "vae_ckpt.pt"
    structured_init(vae)  # block-average encoder, nearest-upsample decoder: ~26 dB before training (vae_init.py)
    opt = torch.optim.AdamW(param_groups(vae.parameters(), vae), lr=args.vae_lr, weight_decay=0.0)
    step, elapsed = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        torch.set_rng_state(state["rng"])
    val = to_tensor(dataset.build_images(16, "heldout"))
    rng = np.random.default_rng(step)
    t_start, t_ckpt, t_eval, best = time.time() - elapsed, time.time(), time.time(), 0.0
    while minutes > 0:  # --vae-minutes 0: keep the structured init as it is (the encoder then stays exact)
        idx = np.sort(rng.integers(0, len(images), args.vae_batch))
        x = to_tensor(np.asarray(images[idx]))
        for g in opt.param_groups:
            g["lr"] = args.vae_lr * g["scale"] * min(1.0, (step + 1) / 50)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        rec = rec.float()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        elapsed = time.time() - t_start
        if step in (1, 5, 20):
            log(work, f"vae step {step} loss {loss.item():.4f} elapsed {elapsed:.0f}s")
        if time.time() - t_eval > 180:
            t_eval = time.time()
            best = psnr(vae, val)
            log(work, f"vae step {step} loss {loss.item():.4f} psnr {best:.2f} dB elapsed {elapsed / 60:.1f} min")
        if time.time() - t_ckpt > 300:
            atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                         "rng": torch.get_rng_state()}, ckpt)
            t_ckpt = time.time()
        if best >= target or elapsed > minutes * 60:
            break
    log(work, f"vae done: step {step}, psnr {psnr(vae, val):.2f} dB, {elapsed / 60:.1f} min")
    vae.eval()
    normalise_latents(vae, images)
    log(work, f"vae normalised: psnr {psnr(vae, val):.2f} dB")
    atomic_save(vae.state_dict(), final)
    (work / "vae_stats.json").write_text(json.dumps({"steps": step, "minutes": elapsed / 60,
                                                     "psnr_db": psnr(vae, val)}))
    return vae


@torch.no_grad()
def normalise_latents(vae: torch.nn.Module, images: np.ndarray) -> None:
    """Centre and scale each latent channel so that latent * 0.18215 has zero mean and unit std.

    Exact: the encoder's quant_conv mean rows become (mean - m) * k, its log-variance rows gain 2 ln k,
    and post_quant_conv absorbs 1/k and the offset m, so decode(encode(x)) is unchanged.
    """
    x = to_tensor(np.asarray(images[:256]))
    mean = vae.encode(x).latent_dist.mean.float()
    m = mean.mean(dim=(0, 2, 3))
    s = mean.std(dim=(0, 2, 3))
    k = (1.0 / models.LATENT_SCALE) / s
    q, p = vae.quant_conv, vae.post_quant_conv
    q.weight[:4] *= k.view(4, 1, 1, 1)
    q.bias[:4] = (q.bias[:4] - m) * k
    q.bias[4:] += 2 * torch.log(k)
    p.bias += (p.weight[:, :, 0, 0] @ m)
    p.weight /= k.view(1, 4, 1, 1)


def stage_encode(work: Path, vae: torch.nn.Module, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    path = work / "latents.pt"
    if not path.exists():
        t0 = time.time()
        means, stds = [], []
        with torch.no_grad():
            for start in range(0, len(images), 64):
                x = to_tensor(np.asarray(images[start:start + 64]))
                dist = vae.encode(x).latent_dist
                means.append(dist.mean.float().half())
                stds.append(dist.std.float().half())
        atomic_save({"mean": torch.cat(means), "std": torch.cat(stds)}, path)
        log(work, f"encode: {len(images)} latents in {time.time() - t0:.0f}s")
    state = torch.load(path)
    return state["mean"], state["std"]


def vae_overrides(args: argparse.Namespace) -> dict[str, object]:
    """VAE config entries chosen on the command line (default: models.VAE_CONFIG unchanged)."""
    out: dict[str, object] = {}
    if args.vae_widths:
        out["block_out_channels"] = [int(w) for w in args.vae_widths.split(",")]
    if args.vae_groups:
        out["norm_num_groups"] = args.vae_groups
    return out


class Captions:
    """Random captions of training scenes, tokenised to 77 ids with the real CLIP tokenizer."""

    def __init__(self, count: int) -> None:
        from retouch.models.tokenizers import clip_tokenizer

        self.scenes = [dataset.draw_scene(i) for i in range(count)]
        self.tok = clip_tokenizer()

    def ids(self, idx: np.ndarray, rng: np.random.Generator, drop: float) -> torch.Tensor:
        texts = ["" if rng.random() < drop else dataset.caption(self.scenes[i], rng) for i in idx]
        out = self.tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        return out.input_ids


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)


def initial_weights(unet: torch.nn.Module, text: torch.nn.Module, source: str) -> None:
    """Start the UNet and text encoder from ``source``: "" (PyTorch's default initialisation), "demo" (the
    shipped demo model's weights) or an ``export_diffusers.pt`` path. A 9-channel UNet gets the 4-channel
    ``conv_in`` in its first four input channels and zeros for the mask and masked-image channels, so
    it starts as the source model ignoring them (the usual way inpainting models are started)."""
    if not source:
        return
    if source == "demo":
        from retouch.models.loading import load_model

        bundle = load_model("demo", dtype=torch.float32)
        unet_sd, text_sd = bundle.unet.state_dict(), bundle.text_encoders[0].state_dict()
    else:
        saved = torch.load(source, weights_only=False)
        unet_sd, text_sd = saved["unet"], saved["text"]
    want = unet.conv_in.weight.shape[1]
    w = unet_sd["conv_in.weight"]
    if w.shape[1] != want:
        grown = torch.zeros(w.shape[0], want, *w.shape[2:], dtype=w.dtype)
        grown[:, : w.shape[1]] = w
        unet_sd = {**unet_sd, "conv_in.weight": grown}
    unet.load_state_dict(unet_sd)
    text.load_state_dict(text_sd)


def unet_state(work: Path, in_channels: int, init: str):  # noqa: ANN201
    unet, text = models.build_unet(in_channels=in_channels), models.build_text_encoder()
    initial_weights(unet, text, init)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=6e-4, betas=(0.9, 0.99), weight_decay=0.0)
    ema = torch.nn.ModuleDict({"unet": copy.deepcopy(unet), "text": copy.deepcopy(text)}).requires_grad_(False)
    state = {"step": 0, "elapsed": 0.0}
    ckpt = work / "unet_ckpt.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(saved["unet"])
        text.load_state_dict(saved["text"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        torch.set_rng_state(saved["rng"])
        state = {"step": saved["step"], "elapsed": saved["elapsed"]}
    return unet, text, ema, opt, state


def save_unet(work: Path, unet, text, ema, opt, step: int, elapsed: float) -> None:  # noqa: ANN001
    atomic_save({"unet": unet.state_dict(), "text": text.state_dict(), "ema": ema.state_dict(),
                 "opt": opt.state_dict(), "step": step, "elapsed": elapsed, "rng": torch.get_rng_state()},
                work / "unet_ckpt.pt")


def export(work: Path, vae: torch.nn.Module, ema: torch.nn.ModuleDict, step: int, elapsed: float) -> None:
    atomic_save({"vae": vae.state_dict(), "unet": ema["unet"].state_dict(), "text": ema["text"].state_dict(),
                 "step": step, "minutes": elapsed / 60}, work / "export_diffusers.pt")


def stage_unet(work: Path, vae: torch.nn.Module, latents: tuple[torch.Tensor, torch.Tensor],
               args: argparse.Namespace, masked: dict[str, torch.Tensor] | None = None) -> None:
    """Train the UNet and text encoder; ``masked`` (inpaint.py's masks and masked-image latents) makes
    it the 9-channel inpainting variant: input = [noisy latent, latent-size mask, masked-image latent]."""
    mean, std = latents
    caps = Captions(len(mean))
    unet, text, ema, opt, state = unet_state(work, 4 if masked is None else 9, args.init)
    bf16 = use_bf16(args.bf16)
    log(work, f"unet: bf16 autocast {bf16}, cpu {torch.backends.cpu.get_cpu_capability()}, init {args.init!r}, "
              f"{'inpainting (9 channels)' if masked is not None else 'text-to-image (4 channels)'}")
    alphas = __import__("retouch.models.bundle", fromlist=["x"]).scaled_linear_alphas_cumprod().float()
    snr = alphas / (1 - alphas)
    weight = snr.clamp(max=5.0) / snr
    step, t_start = state["step"], time.time() - state["elapsed"]
    rng = np.random.default_rng(1000 + step)
    t_ckpt = t_export = time.time()
    losses: list[float] = []
    unet.train()
    text.train()
    while True:
        elapsed = time.time() - t_start
        if elapsed > args.unet_minutes * 60:
            break
        idx = rng.integers(0, len(mean), args.batch)
        z0 = (mean[idx].float() + std[idx].float() * torch.randn(args.batch, 4, 16, 16)) * models.LATENT_SCALE
        ids = caps.ids(idx, rng, 0.1)
        t = torch.randint(0, 1000, (args.batch,))
        eps = torch.randn_like(z0)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        if masked is not None:
            extra = masked["mean"][idx].float() + masked["std"][idx].float() * torch.randn(args.batch, 4, 16, 16)
            zt = torch.cat([zt, masked["mask"][idx].float(), extra * models.LATENT_SCALE], dim=1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            cond = text(ids).last_hidden_state
            pred = unet(zt, t, encoder_hidden_states=cond).sample
        loss = ((pred.float() - eps) ** 2).mean(dim=(1, 2, 3)).mul(weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + list(text.parameters()), 1.0)
        opt.step()
        step += 1
        ema_update(ema["unet"], unet, min(args.ema, (1 + step) / (10 + step)))
        ema_update(ema["text"], text, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 25 == 0 or step in (1, 5):
            log(work, f"unet step {step} loss {np.mean(losses):.4f} lr {lr:.1e} "
                      f"elapsed {(time.time() - t_start) / 60:.1f} min")
            losses = []
        if time.time() - t_ckpt > args.ckpt_minutes * 60:
            save_unet(work, unet, text, ema, opt, step, time.time() - t_start)
            t_ckpt = time.time()
        if time.time() - t_export > args.export_minutes * 60:
            export(work, vae, ema, step, time.time() - t_start)
            t_export = time.time()
            log(work, f"exported EMA at step {step}")
    elapsed = time.time() - t_start
    save_unet(work, unet, text, ema, opt, step, elapsed)
    export(work, vae, ema, step, elapsed)
    log(work, f"unet done: {step} steps, {elapsed / 60:.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/demo"))
    ap.add_argument("--images", type=int, default=16000)
    ap.add_argument("--vae-minutes", type=float, default=0)
    ap.add_argument("--vae-batch", type=int, default=4)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-widths", default="", help="e.g. 32,64,128,128 (default: models.VAE_CONFIG)")
    ap.add_argument("--vae-groups", type=int, default=0, help="GroupNorm groups (default: models.VAE_CONFIG)")
    ap.add_argument("--latents", type=int, default=16000, help="training images encoded for the UNet stage")
    ap.add_argument("--vae-psnr", type=float, default=26.0)
    add_unet_arguments(ap, minutes=72, lr=8e-4, warmup=100, threads=1)
    ap.add_argument("--init", default="", help='UNet/text start: "" (random), "demo" (shipped) or an export .pt')
    ap.add_argument("--stop-after", choices=["data", "vae", "encode", "unet"], default="unet")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.work.mkdir(parents=True, exist_ok=True)
    log(args.work, f"start: {vars(args)}")
    images = stage_data(args.work, args.images)
    if args.stop_after == "data":
        return
    vae = stage_vae(args.work, images, args).requires_grad_(False)
    if args.stop_after == "vae":
        return
    latents = stage_encode(args.work, vae, images[:args.latents])
    if args.stop_after == "encode":
        return
    stage_unet(args.work, vae, latents, args)


if __name__ == "__main__":
    main()
