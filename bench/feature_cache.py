"""Speed and quality cost of the feature cache and A1111's uncond-skipping options on a model.

    PYTHONPATH=src .venv/bin/python bench/feature_cache.py [--model demo] [--threads 1] [--repeats 2] [--size 512]

Two jobs: the README's main command (inpaint of the bundled scene1 with its mask, "a large red
circle", seed 1, 20 steps Euler a, denoise 1.0, masked content fill, whole picture) and an img2img
of the same scene (strength 0.5, DPM++ 2M, 20 steps). For each setting: the minimum wall time of
``Engine.run`` over ``--repeats`` runs (model loaded, one warm-up), the speed-up against the exact
path, and the PSNR of the final image against the exact path's (the whole image; for the inpaint,
also the mask's bounding box, where the overlay does not hide the change).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "src" / "retouch" / "demo" / "examples"

SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("exact", {}),
    ("cache 2 / depth 1", {"feature_cache_interval": 2, "feature_cache_depth": 1}),
    ("cache 3 / depth 1", {"feature_cache_interval": 3, "feature_cache_depth": 1}),
    ("cache 5 / depth 1", {"feature_cache_interval": 5, "feature_cache_depth": 1}),
    ("cache 2 / depth 2", {"feature_cache_interval": 2, "feature_cache_depth": 2}),
    ("cache 3 / depth 2", {"feature_cache_interval": 3, "feature_cache_depth": 2}),
    ("NGMS 1.0", {"s_min_uncond": 1.0}),
    ("Skip Early CFG 0.2", {"skip_early_cond": 0.2}),
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def jobs(size: int | None) -> dict[str, Any]:
    from retouch import Img2Img

    scene = Image.open(EXAMPLES / "scene1.png").convert("RGB")
    mask = Image.open(EXAMPLES / "scene1_mask.png").convert("L")
    w, h = (size, size) if size else scene.size
    common = dict(init_images=[scene], width=w, height=h, seed=1, steps=20, cfg_scale=7.0)
    return {
        "inpaint (README)": Img2Img(prompt="a large red circle", mask=mask, sampler_name="Euler a",
                                    denoising_strength=1.0, inpainting_fill=0, inpaint_full_res=False,
                                    mask_blur=4, **common),
        "img2img 0.5": Img2Img(prompt="a large red circle", sampler_name="DPM++ 2M", denoising_strength=0.5,
                               **common),
    }


def timed(engine: Any, job: Any, repeats: int) -> tuple[float, np.ndarray]:
    best, image = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = engine.run(job).images[0]
        best = min(best, time.perf_counter() - t0)
        image = np.asarray(out.convert("RGB"))
    assert image is not None
    return best, image


def unet_times(unet: Any, latent: int, repeats: int) -> None:
    """Median time of one CFG-sized (2-row) UNet call: the full pass and the shallow pass per depth."""
    import statistics

    import torch

    from retouch.feature_cache import max_depth, unet_pass

    x = torch.randn(2, unet.config.in_channels, latent, latent)
    t, ctx = torch.tensor([500.0, 500.0]), torch.randn(2, 77, unet.config.cross_attention_dim)

    def median(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    with torch.inference_mode():
        full = median(lambda: unet(x, t, encoder_hidden_states=ctx))
        line = f"UNet call at {latent}x{latent} latent, 2 rows: full {1000 * full:.1f} ms"
        for depth in range(1, max_depth(unet) + 1):
            _, deep = unet_pass(unet, x, t, ctx, depth=depth)
            shallow = median(lambda d=deep, k=depth: unet_pass(unet, x, t, ctx, depth=k, deep=d))  # type: ignore[misc]
            line += f"; shallow depth {depth} {1000 * shallow:.1f} ms ({full / shallow:.1f}x)"
    print(line, f"(median of {repeats})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--size", type=int, default=None, help="processing size (default: the scene's 128x128)")
    args = ap.parse_args()
    import torch

    from retouch import Engine, load_model

    torch.set_num_threads(args.threads)
    engine = Engine(load_model(args.model), precision="fp32")
    unet_times(engine.model.unet, (args.size or 128) // 8, 9)
    mask = Image.open(EXAMPLES / "scene1_mask.png").convert("L")
    box = mask.resize((args.size, args.size)).getbbox() if args.size else mask.getbbox()
    for name, job in jobs(args.size).items():
        engine.run(job)  # warm-up
        base_t, base = timed(engine, job, args.repeats)
        print(f"{name} at {job.width}x{job.height}: exact path {base_t:.2f} s "
              f"(min of {args.repeats}, {args.threads} thread(s))")
        for label, extra in SETTINGS[1:]:
            t, image = timed(engine, job.replace(**extra), args.repeats)
            line = f"  {label:20s} {t:6.2f} s  x{base_t / t:4.2f}  PSNR {psnr(image, base):6.2f} dB"
            if "inpaint" in name and box is not None:
                crop = (slice(box[1], box[3]), slice(box[0], box[2]))
                line += f"  (mask box {psnr(image[crop], base[crop]):6.2f} dB)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
