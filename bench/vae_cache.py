"""Time one repeated img2img job with the VAE posterior cache off, on (first run: miss) and on (hit).

Usage::

    .venv/bin/python bench/vae_cache.py [--model demo|sd15] [--size 512] [--steps 2] [--rounds 2]

``demo`` is ``retouch.load_model("demo")`` (default size 128, its training size); ``sd15`` is the seeded
SD1.5-sized random weights of ``bench/configs.py``. Both engines share the bundle (fp32, one torch
thread); the order is off, on (miss), then ``rounds`` times off, on (hit). Prints each run's end-to-end
time and VAE encode counts, the median saving, and whether every image is byte-identical.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from allocator import cpu_model  # noqa: E402
from PIL import Image  # noqa: E402

from retouch import Engine, Img2Img, load_model  # noqa: E402


def _bundle(name: str) -> Any:
    if name == "demo":
        return load_model("demo")
    import configs

    return configs.bundle(configs.components("sd15", inpaint=False))


def _image(size: int) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0).integers(0, 40, (size, size))
    rgb = np.stack([x * 255 // (size - 1), y * 255 // (size - 1), (x + y) * 127 // (size - 1) + rng], -1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _timed(engine: Engine, job: Img2Img) -> tuple[float, Any]:
    start = time.perf_counter()
    result = engine.run(job)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["demo", "sd15"], default="demo")
    ap.add_argument("--size", type=int, default=None, help="image side (default: 128 demo, 512 sd15)")
    ap.add_argument("--steps", type=int, default=2, help="steps at strength 0.5 (A1111 runs int(0.5 S) + 1)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    size = args.size or (128 if args.model == "demo" else 512)
    torch.set_num_threads(1)
    bundle = _bundle(args.model)
    on, off = Engine(bundle, precision="fp32"), Engine(bundle, precision="fp32", vae_cache_size=0)
    job = Img2Img(prompt="a watercolour landscape", init_images=[_image(size)], width=size, height=size,
                  steps=args.steps, denoising_strength=0.5, sampler_name="Euler", cfg_scale=7.0, seed=1)
    runs: dict[str, list[float]] = {"off": [], "on (miss)": [], "on (hit)": []}
    images: list[bytes] = []
    order = [("off", off), ("on (miss)", on)] + [("off", off), ("on (hit)", on)] * args.rounds
    for label, engine in order:
        seconds, result = _timed(engine, job)
        runs[label].append(seconds)
        images.append(result.images[0].tobytes())
        counts = (result.parameters["vae_encode_cached"], result.parameters["vae_encode_computed"])
        print(f"{label:10s} {seconds:7.2f} s  encodes cached/computed {counts}", flush=True)
    off_s, hit_s = statistics.median(runs["off"]), statistics.median(runs["on (hit)"])
    print(f"\nCPU: {cpu_model()} ({os.cpu_count()} CPUs, shared), 1 torch thread, {args.model} at {size}x{size}, "
          f"{job.steps} steps at strength 0.5; load average {os.getloadavg()[0]:.2f}")
    print(f"median end to end: off {off_s:.2f} s, on (hit) {hit_s:.2f} s: saved {off_s - hit_s:.2f} s "
          f"({100 * (off_s - hit_s) / off_s:.0f}%); all images byte-identical: {len(set(images)) == 1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
