"""Page faults and time of one SD1.5-sized UNet call per memory allocator (issue #17 item 4).

Usage::

    .venv/bin/python bench/allocator.py [--size 512] [--calls 2] [--rounds 2] [--only default thp ...]

Each (allocator, round) is a fresh process (an allocator is chosen before the process starts: glibc reads
``MALLOC_*`` at start-up, torch reads ``THP_MEM_ALLOC_ENABLE`` once, ``LD_PRELOAD`` swaps ``malloc``).
The child builds the seeded SD1.5 UNet (fp32, channels-last, as ``retouch.runtime`` places it), runs one
untimed warm-up CFG call (batch 2) and then ``calls`` timed calls on one torch thread, each with its
minor/major page faults and user/system CPU from ``getrusage``. Rounds alternate the order of the
allocators. Prints one markdown table (median over calls and rounds) and the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LIBS = Path("/usr/lib/x86_64-linux-gnu")
GLIBC_TUNED = {  # fixed thresholds: no mmap/munmap of big blocks per call, no trimming of the heap top
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**30),
    "MALLOC_TOP_PAD_": str(256 * 2**20),
}
ALLOCATORS: dict[str, dict[str, str]] = {
    "default": {},
    "glibc-tuned": GLIBC_TUNED,
    "thp": {"THP_MEM_ALLOC_ENABLE": "1"},
    "glibc-tuned+thp": {**GLIBC_TUNED, "THP_MEM_ALLOC_ENABLE": "1"},
    "tcmalloc": {"LD_PRELOAD": str(LIBS / "libtcmalloc_minimal.so.4")},
    "jemalloc": {"LD_PRELOAD": str(LIBS / "libjemalloc.so.2")},
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def child(size: int, calls: int) -> None:
    """One process: build the UNet, warm up, time ``calls`` calls; print one JSON line per call."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from configs import SD15_UNET
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, size // 8, size // 8).contiguous(memory_format=torch.channels_last)
    context, t = torch.randn(2, 77, 768), torch.tensor([500.0, 500.0])
    with torch.inference_mode():
        unet(x, t, encoder_hidden_states=context)
        for _ in range(calls):
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            unet(x, t, encoder_hidden_states=context)
            wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
            print(json.dumps({
                "wall_s": wall, "minflt": after.ru_minflt - before.ru_minflt, "majflt": after.ru_majflt - before.ru_majflt,
                "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
                "peak_rss_mib": after.ru_maxrss / 1024,
            }), flush=True)


def run_one(name: str, size: int, calls: int) -> list[dict[str, float]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **ALLOCATORS[name]}
    cmd = [sys.executable, __file__, "--child", "--size", str(size), "--calls", str(calls)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def table(rows: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| allocator | calls | UNet call s (median) | min s | CPU s / call (user + sys) | minor faults / call | "
             "sys s / call | peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for name, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        cpu = statistics.median(r["user_s"] + r["sys_s"] for r in runs)
        lines.append(f"| {name} | {len(runs)} | {med['wall_s']:.2f} | {min(r['wall_s'] for r in runs):.2f} | {cpu:.2f} | "
                     f"{med['minflt']:,.0f} | {med['sys_s']:.2f} | {max(r['peak_rss_mib'] for r in runs):,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--calls", type=int, default=2, help="timed calls per process, after one warm-up call")
    ap.add_argument("--rounds", type=int, default=2, help="processes per allocator, in alternating order")
    ap.add_argument("--only", nargs="+", choices=sorted(ALLOCATORS), default=list(ALLOCATORS))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.size, args.calls)
        return 0
    names = [n for n in args.only if "LD_PRELOAD" not in ALLOCATORS[n] or Path(ALLOCATORS[n]["LD_PRELOAD"]).exists()]
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    load = os.getloadavg()
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rows[name] += run_one(name, args.size, args.calls)
            print(f"round {r + 1} {name}: {[round(x['wall_s'], 2) for x in rows[name]]}", file=sys.stderr, flush=True)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} CPUs), 1 torch thread, {args.size}x{args.size}, CFG batch 2, "
          f"load average {load[0]:.2f} before / {os.getloadavg()[0]:.2f} after\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
