"""Engine: runs one img2img/inpainting job on a ModelBundle, as a numbered recipe of pure steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from retouch.models.bundle import ModelBundle
from retouch.params import Img2Img

__all__ = ["Engine", "Result", "StepInfo", "Interrupted"]


class Interrupted(Exception):
    """Raised inside a sampler when the caller asked to stop or skip (never escapes ``Engine.run``)."""


@dataclass(frozen=True)
class StepInfo:
    """Progress of one sampler step, passed to ``on_step``.

    ``step`` counts executed sampler steps from 1 to ``steps`` (= t_enc + 1, spec §3.5) within batch
    ``job_no`` (0-based) of ``job_count`` (= n_iter). ``denoised`` is the current x0 estimate latent
    (B, 4, H/8, W/8) for previews; ``engine.preview(denoised)`` decodes it.
    """

    job_no: int
    job_count: int
    step: int
    steps: int
    denoised: Any = None


@dataclass
class Result:
    """What one job produced: one entry per generated image in every per-image list.

    ``images`` are the final images (after colour correction and overlay). ``masks`` and
    ``mask_composites`` are filled only when the job asked for them (``return_mask``,
    ``return_mask_composite``). ``comments`` carries notices such as a blank mask turning the job into
    plain img2img or a VAE decode redone in fp32. ``interrupted`` is True when ``should_stop`` ended the
    job early (the images are then the partial results A1111 returns).
    """

    images: list[Image.Image]
    seeds: list[int]
    subseeds: list[int]
    prompts: list[str]
    negative_prompts: list[str]
    infotexts: list[str]
    width: int
    height: int
    sampler_name: str
    scheduler: str
    masks: list[Image.Image] = field(default_factory=list)
    mask_composites: list[Image.Image] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    interrupted: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


StepCallback = Callable[[StepInfo], None]
StopCheck = Callable[[], bool]


class Engine:
    """Runs jobs on one model. ``device`` defaults to CUDA when available, else CPU; ``precision`` is
    "auto" (bf16 where the device supports it natively, else fp32), "fp32", "bf16" or "fp16" (GPU)."""

    def __init__(self, model: ModelBundle, device: str | None = None, precision: str = "auto") -> None:
        self.model = model
        self.device = device
        self.precision = precision

    def run(
        self,
        job: Img2Img,
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
        should_skip: StopCheck | None = None,
    ) -> Result:
        """Run ``job``. ``should_stop`` (interrupt) ends the whole job within one sampler step and
        returns partial images; ``should_skip`` ends only the current batch (spec §5.6)."""
        raise NotImplementedError
