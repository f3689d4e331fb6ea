"""The OpenVINO backend against torch on this CPU: UNet calls, conversion cost, end to end and PSNR (issue #17 item 3).

    PYTHONPATH=src .venv/bin/python bench/ov_backend.py [--threads 1] [--reps 5] [--no-sd15] [--cache-dir DIR]

1. Demo model (``load_model("demo")``): one CFG UNet call (batch 2, 16² latent: 128² pixels) and one
   img2img job (128², 20 steps Euler, strength 0.75), each torch fp32 / OpenVINO fp32 / torch bf16 /
   OpenVINO bf16, alternating, minimum of ``--reps``; PSNR of each final image against torch fp32.
2. SD1.5-sized random UNet (bench/configs.py) at 512² (64² latent, batch 2): one conversion (time, peak
   RSS during it, IR size), then ``--sd15-reps`` alternating calls of torch fp32 vs OpenVINO fp32, then
   torch bf16 vs OpenVINO bf16 (the same IR compiled with ``INFERENCE_PRECISION_HINT=bf16``).

Named ``ov_backend.py``, not ``openvino.py``: bench/ is put on ``sys.path``, where a file of that name
would shadow the ``openvino`` package itself. Every call goes through ``retouch.runtime.Runtime.unet_fn``, so the adapter's copies are counted. The
load average is printed beside every figure: compare the ratios within one run, not the seconds across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

VARIANTS = (("torch fp32", "torch", "fp32"), ("openvino fp32", "openvino", "fp32"),
            ("torch bf16", "torch", "bf16"), ("openvino bf16", "openvino", "bf16"))


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def alternate(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Minimum wall time of each function over ``reps`` rounds, the order reversed every other round."""
    names = list(fns)
    best = dict.fromkeys(names, math.inf)
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def unet_call(runtime: Any, shape: tuple[int, ...], context_dim: int) -> Callable[[], Any]:
    from retouch.sampling.denoisers import Cond

    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    t = torch.full((shape[0],), 500.0)
    cond = Cond(torch.randn(shape[0], 77, context_dim, generator=g))

    def call() -> Any:
        with torch.inference_mode():
            return runtime.unet_fn(x, t, cond)

    return call


def report_ratios(label: str, best: dict[str, float]) -> None:
    print(f"{label} ({load()}):")
    for name, s in best.items():
        print(f"  {name:14s} {s * 1000:9.1f} ms")
    for a, b in (("torch fp32", "openvino fp32"), ("torch bf16", "openvino bf16"), ("torch bf16", "openvino fp32")):
        if a in best and b in best:
            print(f"  {b} vs {a}: {best[a] / best[b]:.2f}x")


def demo(cache: Path, reps: int) -> None:
    from scenarios import init_image

    from retouch import Engine, Img2Img, load_model

    engines = {name: Engine(load_model("demo"), device="cpu", precision=p, backend=b, ov_cache_dir=cache,
                            vae_cache_size=0) for name, b, p in VARIANTS}
    t0 = time.perf_counter()
    job = Img2Img(prompt="a large red circle", init_images=[init_image(128)], width=128, height=128, seed=1,
                  steps=20, sampler_name="Euler", denoising_strength=0.75)
    engines["openvino fp32"].run(job)  # converts UNet, VAE encoder and decoder
    ov = engines["openvino fp32"].runtime.ov
    for engine in engines.values():
        engine.run(job)  # warm-up: the bf16 OpenVINO engine compiles the cached IR here
    print(f"demo: conversion of 3 graphs {ov.convert_s:.1f} s ({time.perf_counter() - t0:.1f} s with the first job), "
          f"IR {ov.cache_bytes() / 2**20:.1f} MiB ({load()})")
    dim = engines["torch fp32"].model.unet.config.cross_attention_dim
    calls = {name: unet_call(e.runtime, (2, 4, 16, 16), dim) for name, e in engines.items()}
    report_ratios("demo UNet call, CFG batch 2, 16² latent", alternate(calls, reps * 4))
    images: dict[str, np.ndarray] = {}

    def job_fn(name: str) -> Callable[[], Any]:
        def run() -> None:
            images[name] = np.asarray(engines[name].run(job).images[0])
        return run

    best = alternate({name: job_fn(name) for name in engines}, reps)
    report_ratios("demo img2img 128², 20 steps Euler, strength 0.75 (16 UNet calls), end to end", best)
    for name in engines:
        print(f"  PSNR {name} vs torch fp32: {psnr(images[name], images['torch fp32']):.2f} dB")


def sd15(cache: Path, reps: int) -> None:
    import configs
    import measure

    from retouch.runtime import Runtime

    parts = configs.components("sd15", False, 1234)
    bundle = dataclasses.replace(configs.bundle(parts), hash="bench-sd15-1234")  # seeded weights, named so
    shape, dim = (2, 4, 64, 64), 768
    rt32 = Runtime(bundle, "cpu", "fp32")
    ov32 = Runtime(bundle, "cpu", "fp32", backend="openvino", ov_cache_dir=cache)
    memory = measure.PeakMemory()
    before = measure.rss_mib()["vmrss_mib"]
    t0 = time.perf_counter()
    ov_call = unet_call(ov32, shape, dim)
    ov_call()
    first = time.perf_counter() - t0
    peak = memory.boundary()
    print(f"sd15 UNet: conversion {ov32.ov.convert_s:.1f} s, first call with compile {first:.1f} s, "
          f"peak RSS {peak:.0f} MiB from {before:.0f} MiB before (+{peak - before:.0f} MiB), "
          f"IR {ov32.ov.cache_bytes() / 2**30:.2f} GiB ({load()})")
    report_ratios("sd15 UNet call 512², CFG batch 2, fp32",
                  alternate({"torch fp32": unet_call(rt32, shape, dim), "openvino fp32": ov_call}, reps))
    del ov32, ov_call
    gc.collect()
    ov16 = Runtime(bundle, "cpu", "bf16", backend="openvino", ov_cache_dir=cache)  # before the torch bf16 cast
    ov16_call = unet_call(ov16, shape, dim)
    t0 = time.perf_counter()
    ov16_call()
    print(f"sd15 bf16: compile from the cached IR + first call {time.perf_counter() - t0:.1f} s, "
          f"conversions {ov16.ov.conversions} ({load()})")
    rt16 = Runtime(bundle, "cpu", "bf16")  # casts the torch UNet to bf16 in place
    report_ratios("sd15 UNet call 512², CFG batch 2, bf16",
                  alternate({"torch bf16": unet_call(rt16, shape, dim), "openvino bf16": ov16_call}, reps))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenVINO CPU threads (default 1)")
    ap.add_argument("--reps", type=int, default=5, help="alternating end-to-end rounds on the demo model")
    ap.add_argument("--sd15-reps", type=int, default=3, help="alternating calls per variant at SD1.5 size")
    ap.add_argument("--no-sd15", action="store_true", help="skip the SD1.5-sized UNet (minutes)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo model")
    ap.add_argument("--cache-dir", type=Path, help="OpenVINO cache folder (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import openvino

    print(f"torch {torch.__version__}, openvino {openvino.__version__}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, threads {args.threads}, {load()}")
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="retouch-ov-bench-"))
    try:
        if not args.no_demo:
            demo(cache / "demo", args.reps)
        if not args.no_sd15:
            sd15(cache / "sd15", args.sd15_reps)
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
