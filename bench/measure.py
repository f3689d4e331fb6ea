"""Measurement tools for the benchmark: call timers, matmul peak, FLOP counts, memory, machine description.

Timers attach from the outside (a forward pre/post hook on the UNet, an instance-level wrapper on the
VAE's ``encode``/``decode``), so neither library is edited and both are measured the same way.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import re
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class CallTimes:
    """Wall-clock seconds of every call of one component, in call order."""

    seconds: list[float] = field(default_factory=list)
    peak_mib: float = math.nan

    @property
    def total(self) -> float:
        return float(sum(self.seconds))

    @property
    def median(self) -> float:
        s = sorted(self.seconds)
        if not s:
            return float("nan")
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


class PeakMemory:
    """Peak RSS per phase: each ``boundary`` reads VmHWM (the peak since the last boundary) and resets it.

    ``overall`` is the maximum over all phases, i.e. the peak since construction; all NaN where the kernel
    does not allow resetting the peak.
    """

    def __init__(self) -> None:
        self.enabled = reset_peak_rss()
        self.overall = math.nan

    def boundary(self) -> float:
        """Peak RSS in MiB since the previous boundary; starts the next phase."""
        if not self.enabled:
            return math.nan
        hwm = rss_mib().get("vmhwm_mib", math.nan)
        self.overall = hwm if math.isnan(self.overall) else max(self.overall, hwm)
        reset_peak_rss()
        return hwm


class Timers:
    """Times the UNet's forward calls and the VAE's encode/decode calls of live modules, with their peak RSS.

    ``attach`` installs the hooks; ``reset`` clears the times between warm-up and measured runs;
    ``detach`` removes everything it installed. Each component's ``peak_mib`` is the highest RSS seen
    during its calls (``memory`` phases are cut at every call's start and end).
    """

    def __init__(self, memory: PeakMemory | None = None, sync: Callable[[], Any] | None = None) -> None:
        self.memory = memory or PeakMemory()
        self._sync = sync or (lambda: None)  # a GPU run waits for the device before reading the clock
        self.unet = CallTimes()
        self.encode = CallTimes()
        self.decode = CallTimes()
        self.text = CallTimes()
        self.unet_shapes: list[tuple[int, ...]] = []
        self._undo: list[Callable[[], None]] = []

    def attach(self, unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        self._hook_forward(unet, self.unet, record_shape=True)
        self._hook_forward(text_encoder, self.text, record_shape=False)
        self._wrap_method(vae, "encode", self.encode)
        self._wrap_method(vae, "decode", self.decode)

    def _hook_forward(self, module: torch.nn.Module, into: CallTimes, record_shape: bool) -> None:
        start: list[float] = []

        def pre(_m: Any, args: tuple[Any, ...]) -> None:
            if record_shape and args and isinstance(args[0], torch.Tensor):
                self.unet_shapes.append(tuple(args[0].shape))
            self.memory.boundary()
            self._sync()
            start.append(time.perf_counter())

        def post(_m: Any, _args: Any, _out: Any) -> None:
            self._sync()
            into.seconds.append(time.perf_counter() - start.pop())
            into.peak_mib = _max(into.peak_mib, self.memory.boundary())

        handles = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        self._undo.extend(h.remove for h in handles)

    def _wrap_method(self, module: torch.nn.Module, name: str, into: CallTimes) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.memory.boundary()
            self._sync()
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._sync()
                into.seconds.append(time.perf_counter() - t0)
                into.peak_mib = _max(into.peak_mib, self.memory.boundary())

        object.__setattr__(module, name, timed)
        self._undo.append(lambda: module.__dict__.pop(name, None))

    def reset(self) -> None:
        for times in (self.unet, self.encode, self.decode, self.text):
            times.seconds.clear()
            times.peak_mib = math.nan
        self.unet_shapes.clear()

    def detach(self) -> None:
        while self._undo:
            self._undo.pop()()

    def summary(self) -> dict[str, Any]:
        return {
            "unet_calls": len(self.unet.seconds),
            "unet_step_median_s": self.unet.median,
            "unet_step_first_s": self.unet.seconds[0] if self.unet.seconds else float("nan"),
            "unet_total_s": self.unet.total,
            "unet_input_shapes": sorted(set(self.unet_shapes)),
            "vae_encode_calls": len(self.encode.seconds),
            "vae_encode_s": self.encode.total,
            "vae_decode_calls": len(self.decode.seconds),
            "vae_decode_s": self.decode.total,
            "peak_mib": {
                "unet": self.unet.peak_mib,
                "vae_encode": self.encode.peak_mib,
                "vae_decode": self.decode.peak_mib,
                "text": self.text.peak_mib,
            },
            "text_calls": len(self.text.seconds),
            "text_s": self.text.total,
        }


def best_time(fn: Callable[[], Any], repeats: int, budget_s: float) -> float:
    """Best wall time of one call of ``fn`` and up to ``repeats`` more, stopping once ``budget_s`` is spent."""
    best = spent = math.inf
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        best, spent = min(best, took), took if i == 0 else spent + took
        if spent > budget_s:
            break
    return best


def _max(a: float, b: float) -> float:
    """max ignoring NaN on either side."""
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


def matmul_peak(dtype: torch.dtype, n_max: int, repeats: int, budget_s: float = 0.5) -> tuple[float, int]:
    """Best GFLOP/s of n x n @ n x n matmuls in ``dtype`` (2n^3 FLOPs each) and the n used.

    n doubles from 256 up to ``n_max`` while a product takes under ``budget_s`` / 8, so a dtype without
    a fast path here (bf16 on a CPU lacking AVX-512 BF16, fp16 on any CPU) costs seconds, not minutes.
    """
    gen = torch.Generator().manual_seed(0)
    n = 256
    while True:
        a = torch.randn(n, n, generator=gen).to(dtype)
        b = torch.randn(n, n, generator=gen).to(dtype)
        t0 = time.perf_counter()
        torch.mm(a, b)
        if n >= n_max or (time.perf_counter() - t0) * 8 > budget_s:
            break
        n *= 2
    best = best_time(lambda: torch.mm(a, b), repeats, budget_s)
    return 2.0 * n**3 / best / 1e9, n


def conv_peak(dtype: torch.dtype, channels: int, size: int, repeats: int, budget_s: float = 0.5) -> float:
    """Best GFLOP/s of a 3x3 same-padded convolution, C->C channels on a size x size map, batch 2."""
    gen = torch.Generator().manual_seed(0)
    x = (
        torch.randn(2, channels, size, size, generator=gen)
        .to(dtype)
        .contiguous(memory_format=torch.channels_last)
    )
    w = (
        torch.randn(channels, channels, 3, 3, generator=gen)
        .to(dtype)
        .contiguous(memory_format=torch.channels_last)
    )
    with torch.no_grad():
        torch.nn.functional.conv2d(x, w, padding=1)
        best = best_time(lambda: torch.nn.functional.conv2d(x, w, padding=1), repeats, budget_s)
    return 2.0 * 2 * channels * channels * 9 * size * size / best / 1e9


def unet_flops(unet_config: dict[str, Any], shape: tuple[int, ...], context_len: int = 77) -> int:
    """FLOPs of one UNet call on input ``shape`` (B, C, H, W), counted by FlopCounterMode on the meta device.

    The meta device runs no arithmetic, so counting a full-size call costs about a second.
    """
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        x = torch.empty(shape)
        t = torch.full((shape[0],), 500.0)
        context = torch.empty(shape[0], context_len, unet_config["cross_attention_dim"])
        with FlopCounterMode(display=False) as counter:
            unet(x, t, encoder_hidden_states=context)
    return int(counter.get_total_flops())


def vae_flops(vae_config: dict[str, Any], size: tuple[int, int]) -> dict[str, int]:
    """FLOPs of one VAE encode of an RGB (1, 3, H, W) image and one decode of its latent (meta device)."""
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode

    h, w = size
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(vae_config)
        with FlopCounterMode(display=False) as enc:
            vae.encode(torch.empty(1, 3, h, w))
        with FlopCounterMode(display=False) as dec:
            vae.decode(torch.empty(1, vae_config["latent_channels"], h // 8, w // 8))
    return {"encode": int(enc.get_total_flops()), "decode": int(dec.get_total_flops())}


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads, in seconds."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) via /proc/self/clear_refs; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> dict[str, float]:
    """Current RSS, VmHWM (peak since the last reset) and ru_maxrss (process lifetime peak), in MiB."""
    out = {"ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key.lower() + "_mib"] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def machine() -> dict[str, Any]:
    """CPU model, core count, flags that matter, torch/diffusers/transformers versions, threads."""
    from importlib.metadata import version

    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", info["cpu"]).strip()
        info["cores"] = int(fields.get("CPU(s)", info["cores"]))
        flags = fields.get("Flags", "").split()
        info["flags"] = sorted(f for f in flags if re.match(r"avx512_bf16|avx512f|amx|avx2$|avx_vnni", f))
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    info.update(
        torch=torch.__version__,
        diffusers=version("diffusers"),
        transformers=version("transformers"),
        python=platform.python_version(),
        torch_threads=torch.get_num_threads(),
        mkldnn_bf16=bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()),
    )
    return info
