"""Benchmark scenarios as data, with the inputs and the equal-work step counts for both implementations.

Equal work means the same number of UNet evaluations (each one a batched cond/uncond CFG call):
- Retouch follows A1111 (spec §3.1): ``t_enc = int(min(d, 0.999) * S)`` and ``t_enc + 1`` sampler steps;
- diffusers' img2img/inpaint pipelines run ``min(int(S * d), S)`` steps (``get_timesteps``).
With Euler (one evaluation per step) the step counts below give ``evals`` evaluations to each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PROMPT = "a photograph of a red fox in a snowy forest, detailed fur, soft light"
NEGATIVE = "blurry, low quality"
CFG_SCALE = 7.0
SEED = 1234


def a1111_evals(steps: int, strength: float) -> int:
    """UNet evaluations of an A1111/Retouch img2img Euler run (spec §3.1)."""
    return int(min(strength, 0.999) * steps) + 1


def diffusers_evals(steps: int, strength: float) -> int:
    """UNet evaluations of a diffusers img2img/inpaint Euler run (``get_timesteps``)."""
    return min(int(steps * strength), steps)


def sdcpp_evals(steps: int, strength: float) -> int:
    """UNet evaluations of a stable-diffusion.cpp img2img Euler run: its ``t_enc = int(steps * strength)``,
    one less when that is every step (0.4.7, ``generate_image``: it keeps the last ``t_enc + 1`` sigmas)."""
    t_enc = int(steps * strength)
    return t_enc - 1 if t_enc == steps else t_enc


def steps_for(evals: int, strength: float, count: str) -> int:
    """The smallest ``steps`` giving ``evals`` evaluations under ``count`` ("a1111", "diffusers", "sdcpp")."""
    fn = {"a1111": a1111_evals, "diffusers": diffusers_evals, "sdcpp": sdcpp_evals}[count]
    for steps in range(1, 10_000):
        if fn(steps, strength) == evals:
            return steps
    raise ValueError(f"no step count gives {evals} evaluations at strength {strength} ({count})")


@dataclass(frozen=True)
class Scenario:
    """One benchmark case. Sizes are pixels; ``mask`` is the side of a square mask, None for img2img.

    ``processing`` is the size the model runs at: the image size for whole-picture work, the
    ``width``/``height`` the only-masked crop is resized to otherwise (A1111, spec §2.7).
    """

    name: str
    title: str
    image: int
    processing: int
    mask: int | None = None
    only_masked: bool = False
    padding: int = 0
    batch: int = 1
    strength: float = 0.75
    evals: int = 5
    impls: tuple[str, ...] = ("diffusers", "retouch")

    @property
    def inpaint(self) -> bool:
        return self.mask is not None

    @property
    def retouch_steps(self) -> int:
        return steps_for(self.evals, self.strength, "a1111")

    @property
    def diffusers_steps(self) -> int:
        return steps_for(self.evals, self.strength, "diffusers")


def scenarios(quick: bool, slow: bool = False, diffusers_bf16: bool = True) -> list[Scenario]:
    """The issue #7 scenarios; ``quick`` divides every size by 8 (tiny models, 64x64 images).

    ``slow`` adds diffusers' whole-picture 1024x1024 inpainting (minutes in fp32 on 2 cores).
    ``diffusers_bf16`` adds diffusers cast to bf16 as a second reference on the 512 img2img case.
    """
    k = 8 if quick else 1
    ref = ("diffusers", "retouch") + (("diffusers-bf16",) if diffusers_bf16 else ())
    big = 1024 // k
    return [
        Scenario("img2img", f"img2img {512 // k}² strength 0.75", 512 // k, 512 // k, impls=ref),
        Scenario("inpaint", f"inpaint whole picture {512 // k}²", 512 // k, 512 // k, mask=256 // k),
        Scenario(
            "inpaint-only-masked",
            f"inpaint only masked, {128 // k}² mask on {big}² (runs at {512 // k}²)",
            big,
            512 // k,
            mask=128 // k,
            only_masked=True,
            padding=32 // k,
            impls=("retouch",),
        ),
        Scenario(
            "inpaint-whole-big",
            f"inpaint whole picture {big}², same {128 // k}² mask",
            big,
            big,
            mask=128 // k,
            impls=("diffusers", "retouch") if slow else ("retouch",),
        ),
        Scenario("batch4", f"img2img batch 4, {512 // k}²", 512 // k, 512 // k, batch=4),
    ]


def init_image(size: int) -> Image.Image:
    """A deterministic RGB test picture: smooth gradients, rings and a little seeded noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    r = np.hypot(x - 0.4, y - 0.55)
    rgb = np.stack([0.5 + 0.5 * np.sin(9 * r), x, 0.3 + 0.4 * y * (1 - x)], axis=-1)
    noise = np.random.default_rng(SEED).normal(0.0, 0.03, rgb.shape)
    return Image.fromarray((np.clip(rgb + noise, 0, 1) * 255).astype(np.uint8), "RGB")


def square_mask(size: int, side: int) -> Image.Image:
    """An "L" mask, white (repaint) in a ``side`` x ``side`` square centred at 60% of each axis."""
    m = np.zeros((size, size), np.uint8)
    c = int(size * 0.6)
    lo = max(0, min(size - side, c - side // 2))
    m[lo : lo + side, lo : lo + side] = 255
    return Image.fromarray(m, "L")
