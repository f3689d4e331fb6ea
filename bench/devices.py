"""What ``bench/run.py --device`` runs on each device, as data (issue #17 item 7).

On ``cpu`` (the default) the benchmark is what it always was: Retouch at precision "auto", diffusers in
fp32 as shipped, plus diffusers cast to bf16 where the CPU has native bf16. On ``cuda`` both sides run
the same scenarios in fp16 with PyTorch's scaled-dot-product attention (diffusers' ``AttnProcessor2_0``
set explicitly on each UNet and VAE); the diffusers-bf16 reference and the CPU matmul/conv peaks (and
so the "× limit" table) are left out, and the quality check compares Retouch fp16 with fp32.

:func:`device_run` is pure: it takes whether CUDA is available instead of asking torch, so the choice
and its error are tested on a machine without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEVICES", "DeviceRun", "device_run"]

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class DeviceRun:
    """How every child runs: torch ``device``, Retouch's ``precision``, diffusers' ``diffusers_dtype``
    (a torch dtype name), ``attention`` ("default": the libraries' own choice, "sdpa": set explicitly),
    the low precision of the quality check, and whether the CPU peaks and diffusers-bf16 apply."""

    device: str
    precision: str
    diffusers_dtype: str
    attention: str
    quality_low: str
    cpu_peaks: bool
    diffusers_bf16: bool

    def task_fields(self) -> dict[str, str]:
        """The fields every child task carries (``tasks.run_task`` reads them)."""
        return {"device": self.device, "precision": self.precision, "diffusers_dtype": self.diffusers_dtype,
                "attention": self.attention, "quality_low": self.quality_low}


def device_run(device: str, cuda_available: bool, torch_version: str = "") -> DeviceRun:
    """The run for ``--device`` (``cpu`` or ``cuda``); SystemExit naming the problem when it cannot run."""
    if device not in DEVICES:
        raise SystemExit(f"--device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu":
        return DeviceRun("cpu", "auto", "float32", "default", "bf16", cpu_peaks=True, diffusers_bf16=True)
    if not cuda_available:
        build = f" (torch {torch_version})" if torch_version else ""
        raise SystemExit(
            f"--device cuda: no CUDA device is available to torch{build}: torch.cuda.is_available() is False. "
            "Run it on a machine with an NVIDIA GPU and a CUDA build of torch, or use --device cpu."
        )
    return DeviceRun("cuda", "fp16", "float16", "sdpa", "fp16", cpu_peaks=False, diffusers_bf16=False)
