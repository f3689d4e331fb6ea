"""Denoiser wrappers: prediction-type scaling -> CFG (or 3-branch image CFG) -> mask blend.

A sampler sees one callable ``denoiser(x, sigma) -> x0`` (k-diffusion convention). What makes a job
img2img, inpainting or an instruct-pix2pix edit lives here, as wrappers, never as sampler flags
(spec §3.4 model call, §4.1-§4.2 image conditioning, §4.5 CFG and per-step blend).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from retouch.sampling.blend import LinearBlend, MaskBlend
from retouch.sampling.schedules import sigma_to_t

__all__ = [
    "Cond",
    "UNetFn",
    "ModelDenoiser",
    "CFGDenoiser",
    "StopRequested",
    "latent_blend",
    "latent_upscale",
]


class StopRequested(Exception):
    """Raised by :class:`CFGDenoiser` when its ``should_stop`` check fires (spec §5.6)."""


@dataclass(frozen=True)
class Cond:
    """Conditioning for one UNet call, batch-first.

    ``context``: text embeddings (B, T, D). ``pooled``/``time_ids``: SDXL's pooled text embedding
    (B, P) and size/crop ids (B, 6). ``concat``: extra UNet input channels (B, C, h, w) appended after
    the scaled latent (inpainting: [mask, masked-image latent]; pix2pix: image latent).
    """

    context: Tensor
    pooled: Tensor | None = None
    time_ids: Tensor | None = None
    concat: Tensor | None = None

    def cat(self, other: Cond) -> Cond:
        """Concatenate two conditionings along the batch axis (for one batched CFG call)."""

        def join(a: Tensor | None, b: Tensor | None) -> Tensor | None:
            return None if a is None or b is None else torch.cat([a, b])

        return Cond(
            torch.cat([self.context, other.context]),
            join(self.pooled, other.pooled),
            join(self.time_ids, other.time_ids),
            join(self.concat, other.concat),
        )


#: ``unet(x_in, t, cond) -> raw model output`` (eps or v), x_in already scaled by c_in.
UNetFn = Callable[[Tensor, Tensor, Cond], Tensor]


class ModelDenoiser:
    """Turns a UNet into ``x0 = D(x, sigma)`` with k-diffusion's VE scaling (spec §3.4 "Model call").

    eps-prediction: ``x0 = x - sigma * eps(x * c_in, t(sigma))``. v-prediction:
    ``x0 = x * c_skip + v * c_out`` with ``c_skip = 1/(sigma²+1)``, ``c_out = -sigma/sqrt(sigma²+1)``.
    ``c_in = 1/sqrt(sigma²+1)``; ``t(sigma)`` is the fractional timestep from log-sigma interpolation.
    """

    def __init__(self, unet: UNetFn, model_sigmas: Tensor, prediction: str) -> None:
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction must be 'epsilon' or 'v_prediction'; got {prediction!r}")
        self.unet = unet
        self.model_sigmas = model_sigmas
        self.prediction = prediction

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        s = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        c_in = 1.0 / (s**2 + 1.0) ** 0.5
        t = sigma_to_t(sigma.to(self.model_sigmas.dtype), self.model_sigmas)
        out = self.unet(x * c_in, t, cond).to(x.dtype)
        if self.prediction == "epsilon":
            return x - s * out
        return x / (s**2 + 1.0) + out * (-s / (s**2 + 1.0) ** 0.5)


class CFGDenoiser:
    """Classifier-free guidance with A1111's per-step inpainting blend (spec §4.5, §4.2).

    Per call: stop check -> one batched UNet call over [cond, uncond(, image-uncond)] (separate calls
    when the text lengths differ) -> combine -> ``blend.step(x0, sigma, call)`` where a mask exists
    (default :class:`~retouch.sampling.blend.LinearBlend`: ``x0 * nmask + init_latent * keep`` with the
    *clean* init latent, as A1111 does). The conditional branch's x0 of the last completed call is
    kept in ``last_denoised`` (returned on interrupt). ``cfg_scale == 1`` skips the uncond branch.
    ``image_cfg_scale`` (edit models) enables the 3-branch combine
    ``u + cfg*(c - i) + image_cfg*(i - u)`` where the ``u`` branch gets a zero image latent.
    """

    def __init__(
        self,
        model: ModelDenoiser,
        cond: Cond,
        uncond: Cond,
        cfg_scale: float,
        *,
        image_cfg_scale: float | None = None,
        init_latent: Tensor | None = None,
        nmask: Tensor | None = None,
        should_stop: Callable[[], bool] | None = None,
        blend: MaskBlend | None = None,
    ) -> None:
        self.model = model
        self.cond = cond
        self.uncond = uncond
        self.cfg_scale = cfg_scale
        self.image_cfg_scale = image_cfg_scale
        self.init_latent = init_latent
        self.nmask = nmask
        self.should_stop = should_stop
        if blend is None and init_latent is not None and nmask is not None:
            blend = LinearBlend(init_latent, nmask)
        self.blend = blend
        self.last_denoised: Tensor | None = None
        self.calls = 0

    def _branches(self) -> list[Cond]:
        if self.image_cfg_scale is not None and self.image_cfg_scale != 1.0:
            assert self.uncond.concat is not None, "image CFG needs an image conditioning"
            zero_image = replace(self.uncond, concat=torch.zeros_like(self.uncond.concat))
            return [self.cond, self.uncond, zero_image]
        if self.cfg_scale == 1.0:
            return [self.cond]
        return [self.cond, self.uncond]

    def _evaluate(self, x: Tensor, sigma: Tensor, branches: list[Cond]) -> list[Tensor]:
        b = x.shape[0]
        if len({c.context.shape[1] for c in branches}) > 1:
            return [self.model(x, sigma, c) for c in branches]
        joined = branches[0]
        for c in branches[1:]:
            joined = joined.cat(c)
        n = len(branches)
        out = self.model(x.repeat(n, 1, 1, 1), sigma.repeat(n), joined)
        return list(out.split(b))

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        if self.should_stop is not None and self.should_stop():
            raise StopRequested
        outs = self._evaluate(x, sigma, self._branches())
        if len(outs) == 3:
            c, i, u = outs
            denoised = u + self.cfg_scale * (c - i) + float(self.image_cfg_scale) * (i - u)  # type: ignore[arg-type]
        elif len(outs) == 2:
            c, u = outs
            denoised = u + self.cfg_scale * (c - u)
        else:
            c = denoised = outs[0]
        if self.blend is not None:
            denoised = self.blend.step(denoised, sigma, self.calls)
        self.last_denoised = c
        self.calls += 1
        return denoised


def latent_blend(samples: Tensor, init_latent: Tensor, nmask: Tensor) -> Tensor:
    """``samples * nmask + init_latent * (1 - nmask)``: keep the original where nmask is 0 (spec §2.9)."""
    return samples * nmask + init_latent * (1.0 - nmask)


def latent_upscale(latent: Tensor, width: int, height: int) -> Tensor:
    """Resize mode 3 in latent space: bilinear, align_corners=False, to (height//8, width//8) (spec §2.3)."""
    return torch.nn.functional.interpolate(
        latent, size=(height // 8, width // 8), mode="bilinear", align_corners=False
    )
