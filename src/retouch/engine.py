"""Engine: runs one img2img/inpainting job on a ModelBundle, as a numbered recipe of pure steps.

``Engine.run`` follows A1111's ``process_images`` for img2img (spec §1 and Appendix A): plan ->
prepare pixels -> VAE encode -> latent masks and fills -> image conditioning -> per batch: noise,
sigma tail, sampler through the CFG/mask denoiser, final blend, decode -> colour correction, overlay,
infotext. Tensor plumbing (devices, dtypes, VAE) lives in ``retouch.runtime``; maths lives in
``imaging`` and ``sampling``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from retouch.feature_cache import max_depth
from retouch.imaging import conditioning_mask, latent_mask_values
from retouch.imaging.seams import cover_latent_mask
from retouch.imaging.soft import soft_composite_mask
from retouch.info import ModelIdentity, generation_params
from retouch.infotext import format_infotext
from retouch.models.bundle import ModelBundle
from retouch.networks import Networks
from retouch.params import Img2Img, MaskedContent, ParamError, ResizeMode
from retouch.plan import Plan, make_plan
from retouch.preprocess import Prepared, finish_image, prepare_images
from retouch.preset import Preset, device_caps, select_preset
from retouch.prompting import JobConds, TextRequest, build_conds, schedule_steps
from retouch.runtime import VAE_CACHE_SIZE, Runtime, choose_device, signed_pixels
from retouch.sampling.blend import DifferentialBlend, LinearBlend, MaskBlend, SoftInpaintBlend
from retouch.sampling.denoisers import (
    CFGDenoiser,
    LCMDenoiser,
    ModelDenoiser,
    StopRequested,
    latent_blend,
    latent_upscale,
)
from retouch.sampling.noise import ImageNoise
from retouch.sampling.registry import build_sigmas
from retouch.sampling.schedules import sigma_tail
from retouch.speed import check_backend_options, cond_padding, feature_cache, speed_params, uncond_skip
from retouch.token_merge import token_merging

__all__ = ["Engine", "Result", "StepInfo"]


@dataclass(frozen=True)
class StepInfo:
    """Progress of one sampler step, passed to ``on_step``.

    ``step`` counts executed sampler steps from 1 to ``steps`` (the sigma tail's length - 1: t_enc + 1,
    spec §3.5, or more on the "DDIM" grid when 1000 is not a multiple of the step count) within batch
    ``job_no`` (0-based) of ``job_count`` (= n_iter). ``denoised`` is the current x0 estimate latent
    (B, 4, H/8, W/8) for previews; ``Engine.preview(denoised)`` decodes it.
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
    job early (the images are then the partial results A1111 returns). ``parameters`` holds A1111's
    ``info`` keys (spec §5.3) that are not per image.
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


@dataclass
class _Inputs:
    """Per-job tensors shared by every batch: init latent, masks, image conditioning."""

    prepared: Prepared
    init_latent: Tensor
    nmask: Tensor | None
    image_cond: Tensor | None
    comments: list[str]
    vae_encodes: dict[str, int]
    conds: JobConds | None = None


class Engine:
    """Runs jobs on one model.

    ``device`` defaults to CUDA when available, else CPU. ``precision`` is "auto" (bf16 where the
    device computes it natively, else fp32; fp16 on CUDA), "fp32", "bf16" or "fp16" (GPU only). The
    engine moves the bundle's modules to its device and casts the UNet and text encoders to its dtype
    in place; the VAE keeps fp32 weights and runs under autocast, so a NaN decode can be redone in fp32.
    ``channels_last`` stores convolution weights NHWC (faster with oneDNN). ``compile=True`` wraps the
    UNet in ``torch.compile``; the first call's compile time is reported apart, as
    ``Result.parameters["compile_warmup_s"]``. ``vae_cache_size`` VAE posteriors are kept, keyed by the
    exact VAE input, so a repeated job on the same pixels skips the encode with identical results (``0``:
    off); ``Result.parameters["vae_encode_cached"]`` / ``["vae_encode_computed"]`` count a job's encodes.
    ``max_memory`` is the process's memory budget (bytes, or text such as "6G" or "512M"; default: what the
    machine has free at each call): a VAE encode or decode that would not fit runs in tiles with
    whole-image GroupNorm statistics (``retouch.vae_tiles``), within a fraction of an 8-bit level of the
    untiled result, and the job's comments say so. ``preset="fast"`` (``retouch.preset``; default None, the
    exact path) takes the precision it selects for this device when ``precision`` is "auto", and NGMS
    (``s_min_uncond`` 1.0), token merging (ratio 0.5) and the feature cache (interval 2, depth 2 or what
    the UNet allows) for jobs that leave those fields at 0; the infotext then says ``Preset`` and
    ``Precision`` beside each part's own key.
    ``backend``: "torch" (default) or "openvino" (``retouch[openvino]``, CPU only: the UNet and the VAE run
    as OpenVINO models converted from these modules and cached in ``ov_cache_dir``, default
    ``retouch.ov_backend.default_cache_dir()``; see that module). The infotext then says ``Backend:
    openvino`` and ``Result.parameters`` has ``backend`` and ``openvino_conversions``.
    """

    def __init__(
        self, model: ModelBundle, device: str | None = None, precision: str = "auto", *,
        channels_last: bool = True, compile: bool = False, vae_cache_size: int = VAE_CACHE_SIZE,
        embeddings_dir: str | os.PathLike[str] | None = None, lora_dir: str | os.PathLike[str] | None = None,
        max_memory: int | str | None = None, preset: str | None = None, backend: str = "torch", ov_cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model = model
        self.preset: Preset | None = select_preset(preset, device_caps(choose_device(device).type))
        if self.preset is not None and precision == "auto":
            precision = self.preset.precision
        self.runtime = Runtime(model, device=device, precision=precision, channels_last=channels_last,
                               compile=compile, vae_cache_size=vae_cache_size, max_memory=max_memory,
                               backend=backend, ov_cache_dir=ov_cache_dir)
        self.networks = Networks(model, embeddings_dir=embeddings_dir, lora_dir=lora_dir)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def dtype(self) -> torch.dtype:
        return self.runtime.dtype

    def run(
        self,
        job: Img2Img,
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
        should_skip: StopCheck | None = None,
    ) -> Result:
        """Run ``job`` (spec Appendix A).

        ``should_stop`` (interrupt) is read before every denoiser call and ends the whole job within one
        sampler step, returning partial images; ``should_skip`` ends the current batch only and is read
        as a one-shot request (return True once per skip), spec §5.6.
        """
        job = self._with_preset(job)
        plan = make_plan(job)  # 1. names, sizes, seeds, schedule: fails before any model runs
        if plan.sampler.lcm and self.model.family.prediction != "epsilon":
            raise ParamError(f"sampler_name: LCM needs an epsilon-prediction model; {self.model.name} is "
                             f"{self.model.family.name} ({self.model.family.prediction})")
        check_backend_options(job, self.runtime)
        prompt = self.networks.activate(job.prompt)  # 2. LoRA tags merged; the prompt without them
        inputs = self._prepare(job, plan)  # 3-5. pixels, VAE encode, latent masks, image conditioning
        inputs.conds = self._conds(job, plan, prompt, inputs.image_cond)  # 6. text conditioning schedules
        result = self._empty_result(job, plan, inputs.comments + list(self.networks.comments))
        result.parameters.update(inputs.vae_encodes)  # served from the VAE cache / computed
        for n in range(plan.n_iter):  # 7. one batch per iteration
            if should_stop is not None and should_stop():
                result.interrupted = True
                break
            stopped = self._run_batch(job, plan, inputs, n, result, on_step, should_stop, should_skip)
            if stopped:
                result.interrupted = True
                break
        result.comments.extend(c for c in self.runtime.drain_notices() if c not in result.comments)
        if self.runtime.compile_warmup_s is not None:
            result.parameters["compile_warmup_s"] = round(self.runtime.compile_warmup_s, 3)
        if self.runtime.ov is not None:
            result.parameters.update(backend="openvino", openvino_conversions=self.runtime.ov.conversions,
                                     openvino_disk_hits=self.runtime.ov.disk_hits)
        return result

    # -- steps ---------------------------------------------------------------------------------

    def _with_preset(self, job: Img2Img) -> Img2Img:
        """The job with the preset's speed fields where the job leaves them off (0), never the caller's object;
        the cache depth comes with the preset's interval, lowered to what this UNet allows (none below 1)."""
        if self.preset is None:
            return job
        fields: dict[str, Any] = {k: v for k, v in self.preset.job_fields().items() if getattr(job, k) == 0}
        if "feature_cache_interval" in fields:
            depth = min(self.preset.feature_cache_depth, max_depth(self.runtime.model.unet))
            if depth >= 1:
                fields["feature_cache_depth"] = depth
            else:
                del fields["feature_cache_interval"]
        return dataclasses.replace(job, **fields) if fields else job

    def _preset_params(self) -> dict[str, Any]:
        """Infotext keys naming the preset and the precision it ran at (none without a preset)."""
        if self.preset is None:
            return {}
        names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        return {"Preset": self.preset.name, "Precision": names.get(self.dtype, str(self.dtype))}

    def _prepare(self, job: Img2Img, plan: Plan) -> _Inputs:
        prepared = prepare_images(job, plan.width, plan.height)
        hits, misses = self.runtime.vae_cache.hits, self.runtime.vae_cache.misses
        comments = list(plan.comments) + list(prepared.comments)
        images = _batch_images(prepared.images, plan.batch_size)
        slot_seeds = plan.seeds[: plan.batch_size]
        init_latent = self.runtime.encode(images, slot_seeds, sample=True)
        if job.resize_mode == ResizeMode.LATENT_UPSCALE:
            init_latent = latent_upscale(init_latent, plan.width, plan.height)
        nmask = None
        if prepared.latent_mask is not None:
            lh, lw = init_latent.shape[-2:]
            values = latent_mask_values(prepared.latent_mask, lw, lh, job.mask_round)
            if job.latent_mask_mode != "a1111":  # Retouch: every shown generated pixel in a generated cell
                values = cover_latent_mask(prepared.latent_mask, lw, lh, grow=int(job.latent_mask_mode == "cover+1"))
            nmask = torch.from_numpy(values).to(self.device)[None, None].expand_as(init_latent).clone()
            init_latent = self._fill_latent(job, plan, init_latent, nmask)
        image_cond = self._image_conditioning(job, plan, images, prepared.mask, init_latent)
        cache = self.runtime.vae_cache
        encodes = {"vae_encode_cached": cache.hits - hits, "vae_encode_computed": cache.misses - misses}
        return _Inputs(prepared, init_latent, nmask, image_cond, comments, encodes)

    def _fill_latent(self, job: Img2Img, plan: Plan, init_latent: Tensor, nmask: Tensor) -> Tensor:
        """Masked content "latent noise"/"latent nothing" (spec §2.8 modes 2-3)."""
        if job.inpainting_fill == MaskedContent.LATENT_NOISE:
            noise = self._noise(job, plan, 0, init_latent.shape[1:]).first().to(self.device)
            return latent_blend(noise, init_latent, nmask)
        if job.inpainting_fill == MaskedContent.LATENT_NOTHING:
            return init_latent * (1.0 - nmask)
        return init_latent

    def _image_conditioning(
        self, job: Img2Img, plan: Plan, images: list[Image.Image], mask: Image.Image | None, init_latent: Tensor
    ) -> Tensor | None:
        """Extra UNet input channels: 9-channel inpainting (§4.1) or pix2pix image latent (§4.2)."""
        family = self.model.family
        if family.is_edit:
            return self.runtime.encode(images, plan.seeds[: plan.batch_size], sample=False, scale=False)
        if not family.is_inpaint:
            return None
        if mask is None:
            m = np.ones((plan.height, plan.width), dtype=np.float32)
        else:
            m = conditioning_mask(mask, job.mask_round or family.is_sdxl)
        weight = job.inpainting_mask_weight
        masked = [_masked_image(im, m, weight) for im in images]
        masked_latent = self.runtime.encode_arrays(masked, plan.seeds[: plan.batch_size])
        mask_t = torch.from_numpy(m)[None, None].to(self.device)
        mask_t = torch.nn.functional.interpolate(mask_t, size=init_latent.shape[-2:])  # nearest
        return torch.cat([mask_t.expand(len(images), -1, -1, -1), masked_latent], dim=1)

    def _noise(self, job: Img2Img, plan: Plan, n: int, shape: tuple[int, ...]) -> ImageNoise:
        b = plan.batch_size
        resize = None
        if job.seed_resize_from_w > 0 and job.seed_resize_from_h > 0:
            resize = (job.seed_resize_from_w, job.seed_resize_from_h)
        return ImageNoise(
            list(plan.seeds[n * b : (n + 1) * b]), list(plan.subseeds[n * b : (n + 1) * b]),
            job.subseed_strength, tuple(shape), seed_resize_from=resize,  # type: ignore[arg-type]
            eta_noise_seed_delta=job.eta_noise_seed_delta,
        )

    def _conds(self, job: Img2Img, plan: Plan, prompt: str, image_cond: Tensor | None) -> JobConds:
        """Prompt schedules, AND sub-prompts and the negative schedule (spec a1111-prompts.md §0.1)."""
        req = TextRequest(
            steps=schedule_steps(job.steps, plan.sampler.second_order), batch=plan.batch_size,
            width=plan.width, height=plan.height, clip_skip=job.clip_skip, emphasis=job.emphasis,
            embeddings=self.networks.embeddings, cache_key=self.networks.cache_key(), image_cond=image_cond,
        )
        conds = build_conds(self.runtime, prompt, job.negative_prompt, req)
        image_cfg = self.model.family.is_edit and job.image_cfg_scale not in (None, 1.0)
        if image_cfg and len(conds.subprompts) > 1:
            raise ParamError("prompt: instruct-pix2pix with image_cfg_scale takes one prompt; remove AND from it")
        if image_cfg and job.skip_early_cond != 0:
            raise ParamError("skip_early_cond: not available for instruct-pix2pix with image_cfg_scale (A1111 fails there)")
        return conds

    def _run_batch(
        self, job: Img2Img, plan: Plan, inputs: _Inputs, n: int, result: Result,
        on_step: StepCallback | None, should_stop: StopCheck | None, should_skip: StopCheck | None,
    ) -> bool:
        """Sample, decode and finish batch ``n``; returns True when the job was interrupted."""
        init = inputs.init_latent
        noise = self._noise(job, plan, n, init.shape[1:])
        eps = noise.first().to(self.device) * job.initial_noise_multiplier
        sigmas = build_sigmas(plan.sampler, plan.scheduler, plan.schedule_length, self.runtime.model_sigmas,
                              sdxl=self.model.family.is_sdxl)
        tail = sigma_tail(sigmas, plan.t_enc, plan.schedule_length).to(self.device)  # A1111 slices with N
        x = init + eps * tail[0]
        if job.img2img_extra_noise > 0:
            x = x + eps * job.img2img_extra_noise
        assert inputs.conds is not None
        flags = {"stop": False}

        def stop_now() -> bool:
            flags["stop"] = bool(should_stop is not None and should_stop())
            return flags["stop"] or bool(should_skip is not None and should_skip())

        blend = self._mask_blend(job, inputs, sigmas, tail)
        cache = feature_cache(job, self.runtime)
        unet = self.runtime.unet_fn if cache is None else partial(self.runtime.unet_fn, cache=cache)
        denoiser = CFGDenoiser(
            (LCMDenoiser if plan.sampler.lcm else ModelDenoiser)(
                unet, self.runtime.model_sigmas, self.model.family.prediction),
            inputs.conds.subprompts, inputs.conds.uncond, job.cfg_scale,
            image_cfg_scale=job.image_cfg_scale if self.model.family.is_edit else None,
            init_latent=init if inputs.nmask is not None else None, nmask=inputs.nmask, should_stop=stop_now,
            blend=blend, skip=uncond_skip(job, plan), padding=cond_padding(job, self.runtime),
        )
        with token_merging(self.runtime.model.unet, job.token_merging_ratio):  # hooks for this run only
            samples = self._sample(job, plan, denoiser, x, tail, noise, n, on_step)
        if samples is None:  # stopped: A1111 keeps the last conditional x0 estimate
            samples = denoiser.last_denoised if denoiser.last_denoised is not None else init
        if blend is not None:  # the final blend (soft inpainting skips it, spec soft-masks.md §1.5)
            samples = blend.final(samples)
        speed = {**self._preset_params(), **speed_params(job, denoiser)}
        if self.runtime.backend != "torch":
            speed["Backend"] = self.runtime.backend
        self._finish_batch(job, plan, inputs, n, samples, result, speed)
        return flags["stop"]

    def _mask_blend(self, job: Img2Img, inputs: _Inputs, sigmas: Tensor, tail: Tensor) -> MaskBlend | None:
        """The per-step mask blend strategy of this job (spec soft-masks.md §5.1); None without a mask."""
        if inputs.nmask is None:
            return None
        init, nmask = inputs.init_latent, inputs.nmask
        if job.soft_inpainting is not None:
            return SoftInpaintBlend(init, nmask, job.soft_inpainting)
        if job.differential_diffusion is not None:
            start = len(sigmas) - len(tail)
            return DifferentialBlend(init, nmask, job.differential_diffusion, tail, self.runtime.model_sigmas,
                                     start, len(sigmas) - 1)
        return LinearBlend(init, nmask)

    def _soft_masks(self, job: Img2Img, plan: Plan, inputs: _Inputs, samples: Tensor) -> list[Image.Image] | None:
        """Soft inpainting's per-image composite masks from the latent difference (soft-masks.md §1.6)."""
        if job.soft_inpainting is None or inputs.nmask is None:
            return None
        distance = torch.linalg.vector_norm(samples.float() - inputs.init_latent.float(), dim=1).cpu().numpy()
        nmask = inputs.nmask[0, 0].float().cpu().numpy()
        prepared = inputs.prepared
        masks = []
        for k in range(samples.shape[0]):
            original = prepared.originals[k if len(prepared.originals) > 1 else 0]
            masks.append(soft_composite_mask(distance[k], nmask, job.soft_inpainting, plan.width, plan.height,
                                             prepared.paste_box, original.size))
        return masks

    def _sample(
        self, job: Img2Img, plan: Plan, denoiser: CFGDenoiser, x: Tensor, tail: Tensor,
        noise: ImageNoise, n: int, on_step: StepCallback | None,
    ) -> Tensor | None:
        spec = plan.sampler

        def callback(step: Any) -> None:
            if on_step is not None:
                on_step(StepInfo(n, plan.n_iter, step.i + 1, len(tail) - 1, step.denoised))

        kwargs: dict[str, Any] = {"s_noise": job.s_noise} if spec.uses_s_noise else {}
        if job.eta is not None:
            kwargs["eta"] = job.eta
        if spec.uses_churn:
            kwargs.update(s_churn=job.s_churn, s_tmin=job.s_tmin, s_tmax=job.s_tmax or float("inf"))
        try:
            with torch.inference_mode():
                return spec.fn(denoiser, x, tail, noise=lambda like: noise.next(like).to(like.device),
                               callback=callback, **kwargs)
        except StopRequested:
            return None

    def _finish_batch(
        self, job: Img2Img, plan: Plan, inputs: _Inputs, n: int, samples: Tensor, result: Result,
        speed: dict[str, Any],
    ) -> None:
        identity = ModelIdentity(
            self.model.name, self.model.hash, self.model.vae_name, self.model.vae_hash,
            inpainting=self.model.family.is_inpaint, edit=self.model.family.is_edit,
        )
        soft_masks = self._soft_masks(job, plan, inputs, samples)
        pinned = None
        if inputs.nmask is not None:  # pixels of latent cells kept at the init latent (seam correction)
            pinned = np.kron((inputs.nmask[0, 0] == 0).cpu().numpy(), np.ones((8, 8), dtype=bool))
        for k, image in enumerate(self.runtime.decode(samples)):
            index = n * plan.batch_size + k
            soft = soft_masks[k] if soft_masks is not None else None
            final, mask_out, composite = finish_image(job, inputs.prepared, k, image, soft, pinned)
            params = generation_params(
                job, seed=plan.seeds[index], subseed=plan.subseeds[index], width=plan.width,
                height=plan.height, sampler_name=plan.sampler.name, schedule_label=plan.schedule_label,
                model=identity, masked=inputs.prepared.mask is not None,
                eta_default=plan.sampler.default_eta if plan.sampler.uses_eta else None,
                uses_churn=plan.sampler.uses_churn, uses_s_noise=plan.sampler.uses_s_noise,
                prompt_params=self._prompt_params(job, inputs.conds), speed_params=speed,
            )
            text = format_infotext(job.prompt, job.negative_prompt, params)
            final.info["parameters"] = text
            result.images.append(final)
            result.seeds.append(plan.seeds[index])
            result.subseeds.append(plan.subseeds[index])
            result.prompts.append(job.prompt)
            result.negative_prompts.append(job.negative_prompt)
            result.infotexts.append(text)
            if mask_out is not None:
                result.masks.append(mask_out)
            if composite is not None:
                result.mask_composites.append(composite)

    def _prompt_params(self, job: Img2Img, conds: JobConds | None) -> dict[str, Any]:
        """Infotext keys of the prompt path: ``Emphasis`` as A1111 writes it (spec a1111-prompts.md §2.2)."""
        params = self.networks.infotext(conds.embeddings_used if conds is not None else ())
        if conds is not None and conds.bracketed and job.emphasis != "Original":
            params["Emphasis"] = job.emphasis
        return params

    def _empty_result(self, job: Img2Img, plan: Plan, comments: list[str]) -> Result:
        return Result(
            images=[], seeds=[], subseeds=[], prompts=[], negative_prompts=[], infotexts=[],
            width=plan.width, height=plan.height, sampler_name=plan.sampler.name,
            scheduler=plan.schedule_label, comments=list(comments),
            parameters={
                "sd_model_name": self.model.name, "sd_model_hash": self.model.hash,
                "sd_vae_name": self.model.vae_name, "sd_vae_hash": self.model.vae_hash,
                "is_using_inpainting_conditioning": self.model.family.is_inpaint,
                "batch_size": plan.batch_size, "n_iter": plan.n_iter,
                "steps_run": plan.steps_to_run, "family": self.model.family.name,
                "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
            },
        )

    def preview(self, denoised: Tensor) -> list[Image.Image]:
        """Decode an x0 estimate (e.g. ``StepInfo.denoised``) to images, for live previews."""
        return self.runtime.decode(denoised)


def _batch_images(images: tuple[Image.Image, ...], batch_size: int) -> list[Image.Image]:
    """One image repeated over the batch, or one image per slot (spec §2.14)."""
    return list(images) * batch_size if len(images) == 1 else list(images)


def _masked_image(image: Image.Image, mask: np.ndarray, weight: float) -> np.ndarray:
    """``source * (1 - w * mask)`` in [-1, 1], HWC float32 (spec §4.1 step 2)."""
    source = signed_pixels(image)
    return source * (1.0 - weight * mask[..., None])
