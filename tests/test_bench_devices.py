"""``bench/run.py --device``: the per-device run settings and the clear failure without CUDA (bench/devices.py).

No result is faked: these check what the benchmark would pass to its children, and that a CUDA run on
a machine without CUDA stops before any child starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import devices  # noqa: E402


def test_cpu_run_is_the_benchmark_as_before() -> None:
    run = devices.device_run("cpu", cuda_available=False)
    assert run.task_fields() == {"device": "cpu", "precision": "auto", "diffusers_dtype": "float32",
                                 "attention": "default", "quality_low": "bf16"}
    assert run.cpu_peaks and run.diffusers_bf16


def test_cuda_run_is_fp16_with_sdpa_on_both_sides() -> None:
    run = devices.device_run("cuda", cuda_available=True)
    assert run.task_fields() == {"device": "cuda", "precision": "fp16", "diffusers_dtype": "float16",
                                 "attention": "sdpa", "quality_low": "fp16"}
    assert not run.cpu_peaks and not run.diffusers_bf16


def test_cuda_without_a_gpu_says_so() -> None:
    with pytest.raises(SystemExit, match=r"--device cuda: no CUDA device is available to torch \(torch 2.13.0\+cpu\)"):
        devices.device_run("cuda", cuda_available=False, torch_version="2.13.0+cpu")


def test_unknown_device_lists_the_allowed_ones() -> None:
    with pytest.raises(SystemExit, match=r"--device must be one of cpu, cuda; got 'mps'"):
        devices.device_run("mps", cuda_available=True)


def test_run_py_parses_device_and_fails_before_any_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run.collect`` resolves the device first; here CUDA is absent, so it exits before the fork server."""
    import run
    import torch

    args = run.parse_args(["--quick", "--device", "cuda"])
    assert args.device == "cuda"
    assert run.parse_args([]).device == "cpu"
    with pytest.raises(SystemExit):
        run.parse_args(["--device", "tpu"])  # argparse lists the choices
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the failure path does not apply")
    monkeypatch.setattr(run, "Children", lambda: pytest.fail("a child was started"))
    with pytest.raises(SystemExit, match="--device cuda: no CUDA device is available"):
        run.collect(args)


def test_cuda_scenarios_drop_the_bf16_reference() -> None:
    import run

    args = run.parse_args(["--quick"])
    args.run = devices.device_run("cuda", cuda_available=True)
    scs, notes = run.choose_scenarios(args, {"mkldnn_bf16": True})
    assert all("diffusers-bf16" not in s.impls for s in scs)
    assert any("Retouch precision fp16, diffusers float16, attention sdpa" in n for n in notes)
    args.run = devices.device_run("cpu", cuda_available=False)
    scs, _ = run.choose_scenarios(args, {"mkldnn_bf16": True})
    assert "diffusers-bf16" in scs[0].impls
