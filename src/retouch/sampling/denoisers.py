"""Denoiser wrappers: prediction-type scaling -> CFG (or 3-branch image CFG) -> mask blend.

A sampler sees one callable ``denoiser(x, sigma) -> x0`` (k-diffusion convention). What makes a job
img2img, inpainting or an instruct-pix2pix edit lives here, as wrappers, never as sampler flags
(spec §3.4 model call, §4.1-§4.2 image conditioning, §4.5 CFG and per-step blend).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import Tensor

from retouch.sampling.blend import LinearBlend, MaskBlend
from retouch.sampling.conditioning import Cond, CondSchedule, SubPrompt, combine_composable, pad_contexts
from retouch.sampling.guidance import CondPadding, UncondSkip
from retouch.sampling.lcm import lcm_boundary, lcm_timestep
from retouch.sampling.schedules import sigma_to_t

__all__ = [
    "Cond",
    "CondSchedule",
    "SubPrompt",
    "UNetFn",
    "ModelDenoiser",
    "LCMDenoiser",
    "CFGDenoiser",
    "StopRequested",
    "latent_blend",
    "latent_upscale",
]


class StopRequested(Exception):
    """Raised by :class:`CFGDenoiser` when its ``should_stop`` check fires (spec §5.6)."""


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


class LCMDenoiser(ModelDenoiser):
    """A1111's LCM model wrapper (:mod:`retouch.sampling.lcm`): the eps model called at the nearest of
    LCM's 50 grid timesteps, its x0 passed through the consistency boundary scalings. eps models only
    (A1111 wraps every model as eps here; the engine refuses v-prediction models)."""

    def __init__(self, unet: UNetFn, model_sigmas: Tensor, prediction: str) -> None:
        if prediction != "epsilon":
            raise ValueError(f"the LCM sampler needs an epsilon-prediction model; this one predicts {prediction!r}")
        super().__init__(unet, model_sigmas, prediction)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        s = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        c_in = 1.0 / (s**2 + 1.0) ** 0.5
        t = lcm_timestep(sigma.to(self.model_sigmas.dtype), self.model_sigmas)
        x0 = x - s * self.unet(x * c_in, t, cond).to(x.dtype)
        return lcm_boundary(t, x0, x)


class CFGDenoiser:
    """Classifier-free guidance with A1111's per-step inpainting blend (spec §4.5, §4.2).

    Per call: stop check -> the conditionings of this call (prompt editing: each schedule picks its
    entry for the 0-based call counter, spec a1111-prompts.md §1.7) -> one batched UNet call per
    distinct text length over [sub-prompts..., uncond(, image-uncond)] -> combine ->
    ``blend.step(x0, sigma, call)`` where a mask exists (default
    :class:`~retouch.sampling.blend.LinearBlend`: ``x0 * nmask + init_latent * keep`` with the *clean*
    init latent, as A1111 does).

    ``cond`` is one conditioning, one schedule, or the ``AND`` sub-prompts with their weights; the
    combine is ``u + Σ_k (c_k − u)·(w_k·cfg)`` (spec a1111-prompts.md §3). Sub-prompt contexts of
    different lengths are padded by repeating their last token vector (A1111's ``stack_conds``).
    The first sub-prompt's x0 of the last completed call is kept in ``last_denoised`` (returned on
    interrupt). The uncond branch is skipped when it cannot change the result: ``cfg_scale == 1`` with
    one sub-prompt of weight 1. ``image_cfg_scale`` (edit models) enables the 3-branch combine
    ``u + cfg*(c - i) + image_cfg*(i - u)`` where the ``u`` branch gets a zero image latent; it needs
    exactly one sub-prompt, as A1111 asserts.

    A1111's speed options (:mod:`retouch.sampling.guidance`): ``skip`` leaves out the uncond branch on
    the calls its rule picks and combines with the first sub-prompt's output as a fake uncond at scale
    1.0; ``skipped`` counts those calls per option name. ``padding`` pads cond/uncond to one length;
    ``padded`` says whether the last call was padded (A1111's ``padded_cond_uncond`` flags).
    """

    def __init__(
        self,
        model: ModelDenoiser,
        cond: Cond | CondSchedule | Sequence[SubPrompt],
        uncond: Cond | CondSchedule,
        cfg_scale: float,
        *,
        image_cfg_scale: float | None = None,
        init_latent: Tensor | None = None,
        nmask: Tensor | None = None,
        should_stop: Callable[[], bool] | None = None,
        blend: MaskBlend | None = None,
        skip: UncondSkip | None = None,
        padding: CondPadding | None = None,
    ) -> None:
        self.model = model
        self.subprompts = _subprompts(cond)
        self.uncond = uncond if isinstance(uncond, CondSchedule) else CondSchedule.constant(uncond)
        self.cfg_scale = cfg_scale
        self.image_cfg = image_cfg_scale is not None and image_cfg_scale != 1.0
        self.image_cfg_scale = image_cfg_scale
        if self.image_cfg and len(self.subprompts) != 1:
            raise ValueError("image CFG (instruct-pix2pix) takes one prompt: remove AND from the prompt")
        self.init_latent = init_latent
        self.nmask = nmask
        self.should_stop = should_stop
        if blend is None and init_latent is not None and nmask is not None:
            blend = LinearBlend(init_latent, nmask)
        self.blend = blend
        if self.image_cfg and skip is not None and skip.skip_early_cond != 0.0:
            raise ValueError("skip_early_cond does not work with image CFG (instruct-pix2pix); A1111 fails there")
        self.skip = skip
        self.padding = padding
        self.skipped: dict[str, int] = {}
        self.padded = False
        self.last_denoised: Tensor | None = None
        self.calls = 0

    @property
    def skips_uncond(self) -> bool:
        only = self.subprompts[0]
        return not self.image_cfg and self.cfg_scale == 1.0 and len(self.subprompts) == 1 and only.weight == 1.0

    def _skip_reason(self, sigma: Tensor) -> str | None:
        if self.skip is None:
            return None
        s = sigma.reshape(-1)[:1]
        t = float(sigma_to_t(s.to(self.model.model_sigmas.dtype), self.model.model_sigmas)) if self.skip.on_timestep else 0.0
        return self.skip.reason(self.calls, float(s), t, edit=self.image_cfg)

    def _branches(self, call: int, skip_uncond: bool) -> list[Cond]:
        conds = pad_contexts([sp.schedule.at(call) for sp in self.subprompts])
        uncond = self.uncond.at(call)
        if self.padding is not None:
            conds, uncond, self.padded = self.padding.apply(conds, uncond)
        if self.image_cfg:
            assert uncond.concat is not None, "image CFG needs an image conditioning"
            return [conds[0], uncond, replace(uncond, concat=torch.zeros_like(uncond.concat))]
        return conds if skip_uncond else [*conds, uncond]

    def _evaluate(self, x: Tensor, sigma: Tensor, branches: list[Cond]) -> list[Tensor]:
        """Model outputs per branch: one batched call per distinct text length, in branch order."""
        b = x.shape[0]
        outs: dict[int, Tensor] = {}
        for length in dict.fromkeys(c.context.shape[1] for c in branches):
            idx = [i for i, c in enumerate(branches) if c.context.shape[1] == length]
            joined = branches[idx[0]]
            for i in idx[1:]:
                joined = joined.cat(branches[i])
            n = len(idx)
            out = self.model(x.repeat(n, 1, 1, 1), sigma.repeat(n), joined)
            outs.update(zip(idx, out.split(b), strict=True))
        return [outs[i] for i in range(len(branches))]

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        if self.should_stop is not None and self.should_stop():
            raise StopRequested
        reason = self._skip_reason(sigma)
        outs = self._evaluate(x, sigma, self._branches(self.calls, self.skips_uncond or reason is not None))
        c = outs[0]
        weights = [sp.weight for sp in self.subprompts]
        if reason is not None:  # A1111's fake uncond: the first sub-prompt's output, scale 1.0
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
            denoised = combine_composable(outs, weights, c, 1.0)
        elif self.image_cfg:
            _, i, u = outs
            denoised = u + self.cfg_scale * (c - i) + float(self.image_cfg_scale) * (i - u)  # type: ignore[arg-type]
        elif self.skips_uncond:
            denoised = c
        else:
            denoised = combine_composable(outs[:-1], weights, outs[-1], self.cfg_scale)
        if self.blend is not None:
            denoised = self.blend.step(denoised, sigma, self.calls)
        self.last_denoised = c
        self.calls += 1
        return denoised


def _subprompts(cond: Cond | CondSchedule | Sequence[SubPrompt]) -> tuple[SubPrompt, ...]:
    if isinstance(cond, Cond):
        return (SubPrompt(CondSchedule.constant(cond)),)
    if isinstance(cond, CondSchedule):
        return (SubPrompt(cond),)
    if not cond:
        raise ValueError("CFGDenoiser needs at least one sub-prompt")
    return tuple(cond)


def latent_blend(samples: Tensor, init_latent: Tensor, nmask: Tensor) -> Tensor:
    """``samples * nmask + init_latent * (1 - nmask)``: keep the original where nmask is 0 (spec §2.9)."""
    return samples * nmask + init_latent * (1.0 - nmask)


def latent_upscale(latent: Tensor, width: int, height: int) -> Tensor:
    """Resize mode 3 in latent space: bilinear, align_corners=False, to (height//8, width//8) (spec §2.3)."""
    return torch.nn.functional.interpolate(
        latent, size=(height // 8, width // 8), mode="bilinear", align_corners=False
    )
