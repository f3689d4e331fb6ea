"""Throughput of ``retouch serve`` vs ``retouch serve --ray`` (1 and 2 replicas) on the demo model.

Each server runs as its own process (the ``retouch`` command of this checkout), is warmed up with
one request, then answers ``--requests`` img2img requests from ``2 x replicas`` concurrent clients;
images per minute = requests / wall time * 60. The per-request overhead Ray adds is the difference
of the median latency of ``--probes`` sequential one-step 64x64 requests (Ray minus plain), where
the model's own work is smallest. Ray runs a local cluster on 127.0.0.1 (started by the command).
Prints the CPU, its core count and the load average before and after, since the machine may be
shared. Usage::

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/ray_throughput.py [--requests 8]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "src" / "retouch" / "demo" / "examples" / "scene1.png"
RUN = "import sys; from retouch.cli import main; sys.exit(main(sys.argv[1:]))"


def cpu_name() -> str:
    """Model name and the SIMD features that decide torch's speed here (AVX-512, bf16)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(simd) or 'no AVX2'})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(size: int, steps: int, denoise: float, seed: int) -> dict[str, Any]:
    image = base64.b64encode(SCENE.read_bytes()).decode()
    return {"prompt": "a large red circle", "init_images": [image], "width": size, "height": size,
            "steps": steps, "denoising_strength": denoise, "seed": seed, "sampler_name": "Euler"}


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-c", RUN, "serve", "--port", str(port), "--log-level", "warning", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes], timeout: float = 300) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if client.get("/sdapi/v1/sd-models").status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("server did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C to the command (it shuts its Ray cluster down), then kill what is left of its group."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def post(client: httpx.Client, b: dict[str, Any]) -> float:
    t0 = time.monotonic()
    r = client.post("/sdapi/v1/img2img", json=b)
    r.raise_for_status()
    assert r.json()["images"], r.text
    return time.monotonic() - t0


def measure(name: str, args: list[str], clients: int, opts: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    proc = start(args, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            startup = wait_ready(client, proc)
            post(client, body(opts.size, opts.steps, opts.denoise, 0))  # warm-up (model load on the replicas)
            probes = [post(client, body(64, 1, 1.0, i)) for i in range(opts.probes)]
            jobs = [body(opts.size, opts.steps, opts.denoise, 100 + i) for i in range(opts.requests)]
            t0 = time.monotonic()
            with ThreadPoolExecutor(clients) as pool:
                latencies = list(pool.map(lambda b: post(client, b), jobs))
            wall = time.monotonic() - t0
    finally:
        stop(proc)
    return {"server": name, "startup_s": round(startup, 1), "images_per_min": round(opts.requests / wall * 60, 1),
            "mean_latency_s": round(statistics.mean(latencies), 2),
            "probe_median_s": round(statistics.median(probes), 3), "clients": clients}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--probes", type=int, default=5)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--denoise", type=float, default=0.6)
    opts = p.parse_args()
    cores = os.cpu_count() or 1
    print(f"CPU: {cpu_name()}, {cores} cores; load average before: {os.getloadavg()}")
    print(f"job: demo model, {opts.size}x{opts.size}, {opts.steps} steps at denoise {opts.denoise}, "
          f"{opts.requests} requests")
    runs = [
        measure("retouch serve", ["--model", "demo"], 2, opts),
        measure("retouch serve --ray, 1 replica", ["--model", "demo", "--ray", "--replicas", "1",
                "--cpus-per-replica", "1"], 2, opts),
        measure("retouch serve --ray, 2 replicas", ["--model", "demo", "--ray", "--replicas", "2",
                "--cpus-per-replica", "1", "--threads", str(max(1, cores // 2))], 4, opts),
    ]
    plain = runs[0]["probe_median_s"]
    for r in runs:
        r["ray_overhead_ms"] = round((r["probe_median_s"] - plain) * 1000, 1)
        print(json.dumps(r))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
