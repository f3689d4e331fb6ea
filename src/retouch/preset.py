"""The fast preset (issue #17 item 5): what pays on the current device, chosen by a pure function.

``select_preset(name, caps)`` turns a preset name and the device's capabilities into its parts:

* precision: bf16 where oneDNN computes it natively on this CPU (``torch.ops.mkldnn._is_mkldnn_bf16_supported``:
  AVX-512 BF16 or AMX; about 2x the fp32 kernels on the Zen 5 host, ENVIRONMENT.md), fp16 on CUDA, else
  fp32 (emulated bf16 ran about 100x slower on the AVX2 host);
* A1111's negative-guidance minimum sigma (NGMS, ``s_min_uncond`` 1.0: the uncond half of a CFG call is
  skipped once sigma is below 1) and token merging at ratio 0.5 (``token_merging_ratio``; it acts only on
  full-resolution self-attention, so it costs nothing where a model has none). Measured end to end on
  SD1.5-sized weights at 512² (bench/README.md, "End to end against the peers"), each paid 1.2x on its
  own over the bf16 default; NGMS left the demo model's inpainting adherence unchanged;
* the UNet feature cache at interval 2, depth 2 (``retouch.feature_cache``; the depth is lowered to what
  a model allows): on top of NGMS and token merging it took the SD1.5-sized job from 2.56x to 2.99x
  diffusers, and kept the demo model's adherence (119/120 with or without it). Depth 1 was a little
  faster (3.12x) but cost the demo model up to 55 points of adherence on a colour (purple 90% -> 35%)
  on its own; a job that sets its own cache keeps it;
* the backend: the first of ``FAST_BACKENDS`` that the device offers (``DeviceCaps.backends``). Only
  "torch" is listed; a backend that is measured to pay (e.g. OpenVINO, issue #17 item 3) joins the tuple
  and the engine's runtime runs it.

tcmalloc is not a part: it is a launch setting (``LD_PRELOAD``, bench/README.md), not something a process
can switch on for itself. The infotext names each part (``Preset``, ``Precision``, ``NGMS``, ``Token
merging ratio``, the feature-cache keys), so the image can be reproduced anywhere: explicit values win over
what the preset would choose.
"""

from __future__ import annotations

from dataclasses import dataclass

from retouch.params import ParamError

__all__ = ["PRESETS", "FAST_BACKENDS", "DeviceCaps", "Preset", "select_preset", "device_caps"]

PRESETS = ("fast",)
FAST_BACKENDS = ("torch",)


@dataclass(frozen=True)
class DeviceCaps:
    """What the preset needs to know about the device: its kind, native bf16 (CPU), backends available."""

    device_type: str
    native_bf16: bool = False
    backends: tuple[str, ...] = ("torch",)


@dataclass(frozen=True)
class Preset:
    """The parts of a preset: ``precision`` (as ``Engine(precision=...)``), feature cache (0 = none), NGMS,
    token merging, backend. The job fields are given to every job that leaves them off (0)."""

    name: str
    precision: str
    feature_cache_interval: int
    feature_cache_depth: int
    backend: str = "torch"
    s_min_uncond: float = 0.0
    token_merging_ratio: float = 0.0

    def job_fields(self) -> dict[str, float | int]:
        """The ``Img2Img`` fields this preset sets where a job leaves them off."""
        fields = {"feature_cache_interval": self.feature_cache_interval, "s_min_uncond": self.s_min_uncond,
                  "token_merging_ratio": self.token_merging_ratio}
        return {k: v for k, v in fields.items() if v}


def select_preset(name: str | None, caps: DeviceCaps) -> Preset | None:
    """The parts of preset ``name`` on a device with ``caps``; None for no preset; unknown names refused."""
    if name is None:
        return None
    if name not in PRESETS:
        raise ParamError(f"preset must be one of {', '.join(PRESETS)} (or none); got {name!r}")
    if caps.device_type == "cuda":
        precision = "fp16"
    elif caps.device_type == "cpu" and caps.native_bf16:
        precision = "bf16"
    else:
        precision = "fp32"
    backend = next((b for b in FAST_BACKENDS if b in caps.backends), "torch")
    return Preset(name, precision, feature_cache_interval=2, feature_cache_depth=2, backend=backend,
                  s_min_uncond=1.0, token_merging_ratio=0.5)


def device_caps(device_type: str) -> DeviceCaps:
    """This machine's :class:`DeviceCaps` for ``device_type`` (reads torch's oneDNN capability)."""
    from retouch.runtime import cpu_has_native_bf16

    return DeviceCaps(device_type, native_bf16=device_type == "cpu" and cpu_has_native_bf16())
