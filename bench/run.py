"""Benchmark Retouch against diffusers on identical random SD1.5-sized weights (issue #7).

Usage::

    .venv/bin/python bench/run.py [--quick] [--out bench/results/<date>.md] [--only NAME ...] [--device cuda]
    .venv/bin/python bench/run.py peers [--evals 6] [--out bench/results/<date>-peers.md]   # bench/peers.py

Each (implementation, scenario) runs in a fresh child process forked from a fork server that has
imported torch, diffusers and Retouch once; the children of one scenario alternate between the
implementations. Every child builds the same seeded components (checked by a weights fingerprint), so
both sides run bit-identical weights. The parent measures the machine's bf16/fp32 matmul and conv peaks
first, then prints a markdown report; ``--out`` writes it and a JSON twin (same stem, ``.json``).
``--device cuda`` runs the same scenarios in fp16 with SDPA on a CUDA device (``devices.py``).
See bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402
import report  # noqa: E402
import torch  # noqa: E402
from devices import DEVICES, DeviceRun, device_run  # noqa: E402
from scenarios import Scenario, scenarios  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny models, 64x64 images: seconds (smoke test)")
    ap.add_argument("--out", type=Path, help="write the markdown report here and JSON beside it (.json)")
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these scenarios (img2img, inpaint, inpaint-only-masked, inpaint-whole-big, batch4)",
    )
    ap.add_argument(
        "--impls",
        nargs="+",
        choices=("retouch", "diffusers", "diffusers-bf16"),
        help="restrict the implementations run (default: each scenario's own list)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per (implementation, scenario), alternating")
    ap.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed runs before the timed one in each child (default 1 with --quick, 0 otherwise)",
    )
    ap.add_argument(
        "--slow", action="store_true", help="also run diffusers' whole-picture inpaint of the big image"
    )
    ap.add_argument("--no-diffusers-bf16", action="store_true", help="skip the diffusers-in-bf16 reference")
    ap.add_argument("--no-quality", action="store_true", help="skip the bf16-vs-fp32 PSNR check")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads in the children (default 1 with --quick, else torch's own choice)",
    )
    ap.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="cpu (default), or cuda: both sides in fp16 with SDPA on the GPU (no diffusers-bf16, no CPU peaks)",
    )
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.warmup is None:
        args.warmup = 1 if args.quick else 0
    if args.threads is None and args.quick:
        args.threads = 1  # tiny ops on a shared 2-core machine: a second thread mostly waits (see README)
    return args


def measure_peaks(quick: bool) -> dict[str, Any]:
    """bf16/fp32 matmul and 3x3 conv throughput, GFLOP/s (smaller problems with ``quick``)."""
    n_max, budget, reps = (1024, 0.2, 2) if quick else (4096, 3.0, 4)
    c, hw = (320, 32) if quick else (320, 64)
    bf16, n_bf16 = measure.matmul_peak(torch.bfloat16, n_max, reps, budget)
    fp32, n_fp32 = measure.matmul_peak(torch.float32, n_max, reps, budget)
    return {
        "matmul_n": {"bf16": n_bf16, "fp32": n_fp32},
        "conv_c": c,
        "conv_hw": hw,
        "bf16_matmul_gflops": bf16,
        "fp32_matmul_gflops": fp32,
        "bf16_conv_gflops": measure.conv_peak(torch.bfloat16, c, hw, reps, budget),
        "fp32_conv_gflops": measure.conv_peak(torch.float32, c, hw, reps, budget),
    }


class Children:
    """Runs tasks one at a time, each in a fresh process forked from a preloaded fork server."""

    def __init__(self) -> None:
        # Python 3.11's fork server ignores the parent's sys.path: name bench/ in PYTHONPATH so that it can
        # preload ``tasks`` (else every child would import torch and diffusers afresh).
        here = str(Path(__file__).resolve().parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["tasks"])
        self.pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=1, mp_context=self.ctx, max_tasks_per_child=1)

    def submit(self, task: dict[str, Any]) -> cf.Future[dict[str, Any]]:
        import child

        return self.pool.submit(child.run_task, task)

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        return self.wait(self.submit(task))

    def wait(self, future: cf.Future[dict[str, Any]]) -> dict[str, Any]:
        """The task's result, or {"error": ...} when it raised or its process died."""
        try:
            return future.result()
        except cf.process.BrokenProcessPool as e:
            self.pool = self._new_pool()
            return {"error": f"child process died ({e}); out of memory?"}
        except Exception as e:  # a failing implementation is reported, the others still run
            tb = traceback.format_exception_only(type(e), e)[-1].strip()
            return {"error": tb[:300]}

    def close(self) -> None:
        self.pool.shutdown()


def run_scenarios(children: Children, scs: list[Scenario], args: argparse.Namespace) -> dict[str, Any]:
    """Every implementation of every scenario, alternating order between repeats; progress on stderr."""
    size = "tiny" if args.quick else "sd15"
    runs: dict[str, Any] = {}
    for sc in scs:
        impls = [i for i in sc.impls if args.impls is None or i in args.impls]
        collected: dict[str, list[dict[str, Any]]] = {i: [] for i in impls}
        for rep in range(args.repeat):
            for impl in impls if rep % 2 == 0 else impls[::-1]:
                task = {
                    "kind": "impl",
                    "impl": impl,
                    "scenario": dataclasses.asdict(sc),
                    "size": size,
                    "warmup": args.warmup,
                    "threads": args.threads,
                    **args.run.task_fields(),
                }
                t0 = time.perf_counter()
                res = children.run(task)
                res["child_s"] = time.perf_counter() - t0
                collected[impl].append(res)
                print(
                    f"[bench] {sc.name} {impl}: "
                    + (
                        f"error {res['error']}"
                        if "error" in res
                        else f"e2e {res['e2e_s']:.2f}s, UNet step {res['unet_step_median_s']:.3f}s"
                    )
                    + f" (child {res['child_s']:.1f}s)",
                    file=sys.stderr,
                )
        runs[sc.name] = {i: report.summarize_runs(rs) for i, rs in collected.items()}
    count_flops(children, runs)
    return runs


def count_flops(children: Children, runs: dict[str, Any]) -> None:
    """Set ``unet_flops_per_call`` on every run, counted in one child (meta device) per distinct UNet shape."""
    records = [r for by_impl in runs.values() for r in by_impl.values() if r.get("unet_input_shapes")]
    keys = sorted(
        {json.dumps([r["unet_config"], r["unet_input_shapes"][0]], sort_keys=True) for r in records}
    )
    answer = (
        children.run({"kind": "flops", "items": [json.loads(k) for k in keys]}) if keys else {"flops": []}
    )
    counted = dict(zip(keys, answer.get("flops", []), strict=False))
    for r in records:
        key = json.dumps([r.pop("unet_config"), r["unet_input_shapes"][0]], sort_keys=True)
        r["unet_flops_per_call"] = counted.get(key, 0)


def fingerprints(runs: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """One weights fingerprint per family (plain, inpaint); a mismatch between children is an error."""
    seen: dict[str, set[str]] = {}
    for by_impl in runs.values():
        for r in by_impl.values():
            if "fingerprint" in r:
                fam = "sd1-inpaint" if r.get("scenario", "").startswith("inpaint") else "sd1"
                seen.setdefault(fam, set()).add(r["fingerprint"])
    errors = [f"{fam}: children built different weights {sorted(v)}" for fam, v in seen.items() if len(v) > 1]
    return {fam: ",".join(sorted(v)) for fam, v in seen.items()}, errors


def choose_scenarios(args: argparse.Namespace, machine: dict[str, Any]) -> tuple[list[Scenario], list[str]]:
    """The scenarios to run after --only/--slow/bf16 availability, and the notes that explain omissions."""
    notes: list[str] = []
    run: DeviceRun = args.run
    ref_bf16 = not args.no_diffusers_bf16 and run.diffusers_bf16
    if not run.cpu_peaks:
        notes.append(
            f"On {run.device}: Retouch precision {run.precision}, diffusers {run.diffusers_dtype}, attention "
            f"{run.attention}; the diffusers-bf16 reference and the CPU matmul limits do not apply."
        )
    if ref_bf16 and not machine["mkldnn_bf16"] and not args.quick:
        ref_bf16 = False
        notes.append(
            "This CPU has no native bf16 (oneDNN reports none): diffusers-bf16 was skipped, and "
            "Retouch's precision auto runs fp32."
        )
    scs = scenarios(args.quick, slow=args.slow, diffusers_bf16=ref_bf16)
    if args.only:
        unknown = set(args.only) - {s.name for s in scs}
        if unknown:
            raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {[s.name for s in scs]}")
        scs = [s for s in scs if s.name in args.only]
    if not args.slow and any(s.name == "inpaint-whole-big" for s in scs):
        notes.append("diffusers' whole-picture inpaint of the big image was skipped (slow); run with --slow.")
    notes.append(
        "peak RSS = the child process's peak (ru_maxrss over the build of the fp32 modules, the same for both, "
        "then VmHWM over setup and run); 'run extra' and the memory table = peak RSS during setup and run, "
        "or during one phase, minus the RSS right after the build."
    )
    return scs, notes


def _header(
    args: argparse.Namespace, machine: dict[str, Any], scs: list[Scenario], started: Any
) -> dict[str, Any]:
    return {
        "date": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "models": "tiny random (retouch.testing)"
        if args.quick
        else "SD1.5-sized random weights (bench/configs.py)",
        "machine": machine,
        "device": dataclasses.asdict(args.run),
        "args": {k: v for k, v in vars(args).items() if k != "run"} | {"out": str(args.out)},
        "scenarios": [
            dataclasses.asdict(s) | {"retouch_steps": s.retouch_steps, "diffusers_steps": s.diffusers_steps}
            for s in scs
        ],
    }


def select_device(args: argparse.Namespace) -> DeviceRun:
    """``--device`` resolved against this machine (``devices.device_run``; SystemExit when CUDA is absent)."""
    return device_run(args.device, torch.cuda.is_available(), torch.__version__)


def _progress(t0: float, what: str) -> None:
    print(f"[bench] {time.perf_counter() - t0:6.1f}s {what}", file=sys.stderr)


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """Machine, peaks, every scenario's runs and the quality check, as one dict."""
    started, t0 = datetime.datetime.now().astimezone(), time.perf_counter()
    args.run = select_device(args)  # fails at once, before any child starts, when the device is absent
    children = Children()
    try:
        # The first submit waits for the fork server's imports: do it on a thread, read the machine meanwhile.
        baseline = cf.ThreadPoolExecutor(1).submit(children.run, {"kind": "baseline"})
        machine = measure.machine()
        scs, notes = choose_scenarios(args, machine)
        results = _header(args, machine, scs, started)
        results["peaks"] = {}  # CPU peaks only: on a GPU the "x limit" table is left out
        if args.quick and args.run.cpu_peaks:  # smoke run: overlap the peaks with the fork server's imports
            results["peaks"] = measure_peaks(args.quick)
        results["baseline"] = baseline.result()
        _progress(t0, "fork server ready")
        if not args.quick and args.run.cpu_peaks:  # measured while no other process of ours runs
            results["peaks"] = measure_peaks(args.quick)
        _progress(t0, "peaks measured")
        results["runs"] = run_scenarios(children, scs, args)
        _progress(t0, "scenarios done")
        if not args.no_quality:
            # the demo model is small (about 11 M parameters): cheap even where bf16 is emulated
            task = {"kind": "quality", "size": "tiny", "image": 64, "threads": args.threads,
                    **args.run.task_fields()}
            results["quality"] = children.run(task | {"model": None if args.quick else "demo"})
            _progress(t0, "quality checked")
    finally:
        children.close()
    results["fingerprints"], errors = fingerprints(results["runs"])
    results["errors"], results["notes"] = errors, errors + notes
    results["elapsed_s"] = time.perf_counter() - t0
    return report.derive(results)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when any run failed or the children's weights differed.

    ``run.py peers ...`` runs ``peers.py`` instead: end to end on one single file against diffusers and
    stable-diffusion.cpp, with each speed option and the fast preset (issue #17)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["peers"]:
        import peers

        return peers.main(argv[1:])
    args = parse_args(argv)
    results = collect(args)
    text = report.markdown(results)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(
            json.dumps(_clean(results), indent=1, allow_nan=False) + "\n"
        )
    failed = bool(results["errors"])
    failed = failed or any("error" in r for v in results["runs"].values() for r in v.values())
    return 1 if failed or "error" in results.get("quality", {}) else 0


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, unknown objects -> str."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, bool | int | str):
        return x
    return str(x)


if __name__ == "__main__":
    sys.exit(main())
