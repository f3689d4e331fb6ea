"""Refit the VAE decoder's last convolution by least squares (closed form, seconds on CPU).

    .venv/bin/python tools/demo/refit.py runs/demo/vae_decoder.pt runs/demo/vae_refit.pt

The decoder's ``conv_out`` (3x3, C -> 3) is linear in its input features, so its MSE-optimal weights
on a sample of training scenes are a ridge regression on unfolded 3x3 feature patches. This repairs
systematic colour shifts a briefly trained decoder leaves; the rest of the VAE is unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402
from train import psnr, to_tensor  # noqa: E402

import models  # noqa: E402


@torch.no_grad()
def refit_conv_out(vae: torch.nn.Module, images: torch.Tensor, pixels: int = 200_000, ridge: float = 1e-3) -> None:
    """Replace ``vae.decoder.conv_out`` by the ridge-regression fit from its input features to ``images``."""
    feats: list[torch.Tensor] = []
    hook = vae.decoder.conv_out.register_forward_hook(lambda m, inp, out: feats.append(inp[0]))
    for start in range(0, len(images), 16):
        vae.decode(vae.encode(images[start:start + 16]).latent_dist.mode())
    hook.remove()
    f = torch.cat(feats)
    conv = vae.decoder.conv_out
    patches = F.unfold(f, 3, padding=1).transpose(1, 2).reshape(-1, f.shape[1] * 9)  # (N*H*W, C*9)
    target = images.permute(0, 2, 3, 1).reshape(-1, 3)
    idx = torch.from_numpy(np.random.default_rng(0).choice(len(patches), min(pixels, len(patches)), replace=False))
    x = torch.cat([patches[idx], torch.ones(len(idx), 1)], 1).double()
    y = target[idx].double()
    w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=torch.float64), x.T @ y)
    conv.weight.copy_(w[:-1].T.reshape(3, f.shape[1], 3, 3).float())
    conv.bias.copy_(w[-1].float())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("target", type=Path)
    ap.add_argument("--images", type=int, default=96)
    args = ap.parse_args()
    torch.set_num_threads(1)
    vae = models.build_vae()
    vae.load_state_dict(torch.load(args.source))
    vae.eval()
    val = to_tensor(dataset.build_images(32, "heldout"))
    before = psnr(vae, val)
    train = to_tensor(np.stack([dataset.render(dataset.draw_scene(i)) for i in range(args.images)]))
    refit_conv_out(vae, train)
    after = psnr(vae, val)
    print(f"held-out PSNR {before:.2f} dB -> {after:.2f} dB")
    if after > before:
        torch.save(vae.state_dict(), args.target)
        print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
