"""Engine :class:`~retouch.engine.Result` -> A1111's img2img response (spec §5.3).

``images`` are base64 PNGs without a ``data:`` prefix, in the order result, mask (``return_mask``),
composite (``return_mask_composite``) per image; each result PNG carries its infotext in the
``parameters`` text chunk (spec §6.4). ``parameters`` echoes the request, with ``init_images`` and
``mask`` nulled unless ``include_init_images``. ``info`` is a JSON string with A1111's keys, plus
``scheduler``, ``comments`` and ``interrupted``, which A1111 lacks. ``prompt`` and ``negative_prompt``
are the request's (before styles), ``all_prompts`` the styled ones, as A1111's. A script's result may
carry ``parameters["a1111_info"]``: the values A1111's script passes to ``Processed`` (start seed, the
last call's ``all_seeds``...), which replace the per-job ones.
"""

from __future__ import annotations

import json
import time
from typing import Any

from retouch.engine import Result
from retouch.formats.images import encode_png_base64
from retouch.info import VERSION
from retouch.infotext import split_infotext
from retouch.server.a1111.translate import Submission

__all__ = ["build_response", "build_info"]

#: Keys of A1111's fixed infotext list (spec §6.2); the rest of an infotext is extra_generation_params.
_FIXED_KEYS = frozenset({
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration", "Size",
    "Model hash", "Model", "VAE hash", "VAE", "Variation seed", "Variation seed strength",
    "Seed resize from", "Denoising strength", "Clip skip", "ENSD", "RNG", "Tiling", "Version", "User",
})


def _extra_params(infotext: str) -> dict[str, str]:
    if not infotext:
        return {}
    _, _, params = split_infotext(infotext)
    return {k: v for k, v in params.items() if k not in _FIXED_KEYS}


def build_info(sub: Submission, result: Result, job_timestamp: float) -> dict[str, Any]:
    """A1111's ``processed.js()`` keys for ``result`` (spec §5.3)."""
    job, p = sub.job, result.parameters
    first = result.infotexts[0] if result.infotexts else ""
    info = {
        "prompt": sub.request.prompt,
        "all_prompts": list(result.prompts),
        "negative_prompt": sub.request.negative_prompt,
        "all_negative_prompts": list(result.negative_prompts),
        "seed": result.seeds[0] if result.seeds else None,
        "all_seeds": list(result.seeds),
        "subseed": result.subseeds[0] if result.subseeds else None,
        "all_subseeds": list(result.subseeds),
        "subseed_strength": job.subseed_strength,
        "width": result.width,
        "height": result.height,
        "sampler_name": result.sampler_name,
        "cfg_scale": job.cfg_scale,
        "steps": job.steps,
        "batch_size": p.get("batch_size", job.batch_size),
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": p.get("sd_model_name"),
        "sd_model_hash": p.get("sd_model_hash"),
        "sd_vae_name": p.get("sd_vae_name"),
        "sd_vae_hash": p.get("sd_vae_hash"),
        "seed_resize_from_w": job.seed_resize_from_w,
        "seed_resize_from_h": job.seed_resize_from_h,
        "denoising_strength": job.denoising_strength,
        "extra_generation_params": _extra_params(first),
        "index_of_first_image": 0,
        "infotexts": list(result.infotexts),
        "styles": list(sub.request.styles or []),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job_timestamp)),
        "clip_skip": job.clip_skip,
        "is_using_inpainting_conditioning": bool(p.get("is_using_inpainting_conditioning", False)),
        "version": VERSION,
        "scheduler": result.scheduler,
        "comments": list(result.comments),
        "interrupted": result.interrupted,
    }
    info.update(p.get("a1111_info", {}))  # a script's Processed values (retouch.recipes)
    return info


def _images(sub: Submission, result: Result) -> list[str]:
    if not sub.request.send_images:
        return []
    out = []
    for i, image in enumerate(result.images):
        text = result.infotexts[i] if sub.enable_pnginfo and i < len(result.infotexts) else None
        out.append(encode_png_base64(image, text))
        if i < len(result.masks):
            out.append(encode_png_base64(result.masks[i], None))
        if i < len(result.mask_composites):
            out.append(encode_png_base64(result.mask_composites[i], None))
    return out


def build_response(sub: Submission, result: Result, job_timestamp: float) -> dict[str, Any]:
    """The ``{images, parameters, info}`` body of ``POST /sdapi/v1/img2img``."""
    parameters = sub.request.model_dump()
    if not sub.request.include_init_images:
        parameters["init_images"] = None
        parameters["mask"] = None
    info = json.dumps(build_info(sub, result, job_timestamp), default=lambda _: None, allow_nan=False)
    return {"images": _images(sub, result), "parameters": parameters, "info": info}
