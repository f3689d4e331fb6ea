"""Profile one Retouch UNet step (one CFG-batched denoiser call) with torch.profiler.

Usage::

    .venv/bin/python bench/profile_step.py [--size 512] [--precision auto] [--quick] [--calls 1] [--top 25]

Builds the seeded SD1.5-sized components (``--quick``: the tiny ones), puts them in Retouch's ``Engine``,
encodes the prompts through the engine's runtime and times ``calls`` calls of ``runtime.unet_fn`` on a
(2, 4, size/8, size/8) latent after one untimed warm-up call, the last one under torch.profiler. Prints
the top operators by self CPU time, the FLOPs of the call and the achieved GFLOP/s. Run it under py-spy
for a Python-level view: ``py-spy record -r 20 -o /tmp/step.svg -- .venv/bin/python bench/profile_step.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import configs  # noqa: E402
import measure  # noqa: E402
import torch  # noqa: E402
from scenarios import NEGATIVE, PROMPT, SEED  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (latent side = size / 8)")
    ap.add_argument("--precision", default="auto", help="Engine precision: auto, fp32, bf16")
    ap.add_argument("--quick", action="store_true", help="tiny model")
    ap.add_argument("--calls", type=int, default=1, help="timed UNet calls (the last one is profiled)")
    ap.add_argument("--top", type=int, default=25, help="operators to list")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from retouch.engine import Engine
    from retouch.sampling.denoisers import Cond

    parts = configs.components("tiny" if args.quick else "sd15", False, SEED)
    unet_config = dict(parts["unet"].config)
    bundle = configs.bundle(parts)
    engine = Engine(bundle, precision=args.precision)
    rt = engine.runtime
    side = args.size // 8
    with torch.inference_mode():
        c = rt.text_cond(PROMPT, 1, 1, args.size, args.size).context
        u = rt.text_cond(NEGATIVE, 1, 1, args.size, args.size).context
        cond = Cond(torch.cat([u, c]))
        x = torch.randn(2, 4, side, side, generator=torch.Generator().manual_seed(SEED))
        t = torch.full((2,), 700.0)
        rt.unet_fn(x, t, cond)  # warm-up: oneDNN primitive creation, allocator
        times = []
        for i in range(args.calls):
            if i == args.calls - 1:
                with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
                    t0 = time.perf_counter()
                    rt.unet_fn(x, t, cond)
                    times.append(time.perf_counter() - t0)
            else:
                t0 = time.perf_counter()
                rt.unet_fn(x, t, cond)
                times.append(time.perf_counter() - t0)
    flops = measure.unet_flops(unet_config, (2, 4, side, side))
    best = min(times)
    print(f"dtype {engine.dtype}, threads {torch.get_num_threads()}, latent {side}x{side}, calls {times}")
    print(
        f"UNet call: {flops / 1e9:.1f} GFLOP in {best:.3f} s = {flops / best / 1e9:.1f} GFLOP/s "
        "(the profiled call carries profiler overhead)"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
