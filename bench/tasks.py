"""What one benchmark child process does: build the seeded components, run one implementation, measure.

``run_task`` is the entry point; the parent runs each (implementation, scenario) in a fresh process
forked from a preloaded fork server, so every child pays the same import-free start and its peak
memory is its own. The heavy imports, and a warm-up that completes the libraries' lazy imports, run at
module level on purpose: only the fork server imports this module (the parent goes through
``child.py``), once, and every child inherits the result.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from typing import Any

import configs
import measure
import numpy as np
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline
from PIL import Image
from scenarios import CFG_SCALE, NEGATIVE, PROMPT, SEED, Scenario, init_image, square_mask

with contextlib.suppress(Exception):  # preload for the fork server; a broken engine shows in its task
    import retouch.engine  # noqa: F401


def _warm_up() -> None:
    """Finish the libraries' lazy imports once in the fork server, not in every child (about 2 s of CPU each).

    transformers and diffusers import most classes on first use; building one tokenizer and the tiny
    models here loads them, so children forked afterwards start with everything in memory.
    """
    with contextlib.suppress(Exception):
        configs.components("tiny", False, 0)


_warm_up()

IMPLS = ("retouch", "diffusers", "diffusers-bf16")
DEMO_SIZE = 128  # the demo model's training resolution (tools/demo/README.md)


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one task: {"kind": "impl"|"quality"|"flops"|"baseline", ...}; returns a JSON-able dict."""
    torch.set_num_threads(task.get("threads") or torch.get_num_threads())
    kind = task["kind"]
    if kind == "baseline":
        out: dict[str, Any] = {"rss": measure.rss_mib()}
    elif kind == "flops":
        out = {"flops": [measure.unet_flops(config, tuple(shape)) for config, shape in task["items"]]}
    elif kind == "quality":
        out = quality(task["size"], task["image"], task.get("model"), _device(task))
    elif kind == "impl":
        out = run_impl(task["impl"], Scenario(**task["scenario"]), task["size"], task["warmup"], _device(task))
    else:
        raise ValueError(f"unknown task kind {kind!r}; use impl, quality, flops or baseline")
    out["task_cpu_s"] = measure.cpu_seconds()  # the whole child, build included
    return out


def _device(task: dict[str, Any]) -> dict[str, str]:
    """The task's device fields (``devices.DeviceRun.task_fields``); the CPU run's when absent."""
    cpu = {"device": "cpu", "precision": "auto", "diffusers_dtype": "float32", "attention": "default",
           "quality_low": "bf16"}
    return {k: task.get(k, v) for k, v in cpu.items()}


def _sdpa(parts: dict[str, Any], dev: dict[str, str]) -> None:
    """PyTorch SDPA attention set explicitly on the UNet and the VAE (``attention`` "sdpa")."""
    if dev["attention"] == "sdpa":
        from diffusers.models.attention_processor import AttnProcessor2_0

        for name in ("unet", "vae"):
            parts[name].set_attn_processor(AttnProcessor2_0())


def _sync(dev: dict[str, str]) -> Any:
    """A function that waits for the device (CUDA runs asynchronously), or None on the CPU."""
    return torch.cuda.synchronize if dev["device"].startswith("cuda") else None


def run_impl(impl: str, sc: Scenario, size: str, warmup: int, dev: dict[str, str] | None = None) -> dict[str, Any]:
    """Build components, set up ``impl`` on them, run ``warmup`` + 1 times, return times and memory."""
    if impl not in IMPLS:
        raise ValueError(f"unknown implementation {impl!r}; use one of {', '.join(IMPLS)}")
    dev = dev or _device({})
    t0 = time.perf_counter()
    parts = configs.components(size, sc.inpaint, SEED)
    _sdpa(parts, dev)
    build_s = time.perf_counter() - t0
    fp = configs.fingerprint(parts["unet"], parts["vae"], parts["text_encoder"])
    unet_config = json.loads(json.dumps(dict(parts["unet"].config), default=list))
    rss_built = measure.rss_mib()
    memory = measure.PeakMemory()  # run peaks count from here: the built modules are the baseline
    t0 = time.perf_counter()
    call, unet = (_retouch if impl == "retouch" else _diffusers)(impl, sc, parts, dev)
    setup_s = time.perf_counter() - t0
    timers = measure.Timers(memory, sync=_sync(dev))
    timers.attach(unet, parts["vae"], parts["text_encoder"])
    for _ in range(warmup):
        call()
    timers.reset()
    load_before, cpu0, t0 = os.getloadavg()[0], measure.cpu_seconds(), time.perf_counter()
    images, dtype, notes = call()
    e2e, cpu = time.perf_counter() - t0, measure.cpu_seconds() - cpu0
    out = timers.summary()
    timers.detach()
    memory.boundary()
    pixels = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    out.update(
        impl=impl,
        scenario=sc.name,
        dtype=dtype,
        e2e_s=e2e,
        cpu_s=cpu,
        load_avg=[load_before, os.getloadavg()[0]],
        build_s=build_s,
        setup_s=setup_s,
        fingerprint=fp,
        unet_config=unet_config,
        images=len(images),
        image_size=list(images[0].size),
        image_mean=float(pixels.mean()),
        image_std=float(pixels.std()),
        notes=notes,
        rss_built=rss_built,
        rss_end=measure.rss_mib(),
        run_peak_mib=memory.overall,
        warmup=warmup,
        device=dev["device"],
    )
    if dev["device"].startswith("cuda"):
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _inputs(sc: Scenario) -> tuple[Image.Image, Image.Image | None]:
    return init_image(sc.image), square_mask(sc.image, sc.mask) if sc.mask is not None else None


def _retouch(impl: str, sc: Scenario, parts: dict[str, Any], dev: dict[str, str]) -> tuple[Any, torch.nn.Module]:
    """Retouch's Engine on the components, precision "auto", running the scenario as an A1111 job.

    The VAE encode cache is off: the timed repeats run the same input, and diffusers has no such
    cache, so both sides encode every run (``bench/vae_cache.py`` measures the cache itself)."""
    from retouch.engine import Engine
    from retouch.params import Img2Img, MaskedContent

    bundle = configs.bundle(parts, inpaint=sc.inpaint)
    engine = Engine(bundle, device=dev["device"], precision=dev["precision"], vae_cache_size=0)
    image, mask = _inputs(sc)
    job = Img2Img(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        seed=SEED,
        sampler_name="Euler",
        steps=sc.retouch_steps,
        cfg_scale=CFG_SCALE,
        width=sc.processing,
        height=sc.processing,
        init_images=[image],
        denoising_strength=sc.strength,
        batch_size=sc.batch,
        mask=mask,
        inpaint_full_res=sc.only_masked,
        inpaint_full_res_padding=sc.padding,
        inpainting_fill=MaskedContent.ORIGINAL,
    )

    def call() -> tuple[list[Image.Image], str, list[str]]:
        result = engine.run(job)
        return result.images, str(engine.dtype).removeprefix("torch."), list(result.comments)

    return call, bundle.unet


def _diffusers(impl: str, sc: Scenario, parts: dict[str, Any], dev: dict[str, str]) -> tuple[Any, torch.nn.Module]:
    """diffusers' img2img or inpaint pipeline on the same modules: the device's dtype (fp32 as shipped on
    the CPU, fp16 on CUDA), or cast to bf16 (``diffusers-bf16``)."""
    cls = StableDiffusionInpaintPipeline if sc.inpaint else StableDiffusionImg2ImgPipeline
    pipe = cls(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=parts["unet"],
        scheduler=EulerDiscreteScheduler(**configs.SD15_EULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    dtype = torch.bfloat16 if impl == "diffusers-bf16" else getattr(torch, dev["diffusers_dtype"])
    pipe.to(dev["device"], dtype=dtype)
    image, mask = _inputs(sc)
    kwargs: dict[str, Any] = dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        image=image,
        strength=sc.strength,
        num_inference_steps=sc.diffusers_steps,
        guidance_scale=CFG_SCALE,
        num_images_per_prompt=sc.batch,
    )
    if mask is not None:
        kwargs.update(mask_image=mask, width=sc.processing, height=sc.processing)

    def call() -> tuple[list[Image.Image], str, list[str]]:
        kwargs["generator"] = torch.Generator("cpu").manual_seed(SEED)
        with torch.inference_mode():
            images = pipe(**kwargs).images
        return images, str(dtype).removeprefix("torch."), []

    return call, parts["unet"]


def quality(size: str, image_size: int, model: str | None, dev: dict[str, str] | None = None) -> dict[str, Any]:
    """PSNR of Retouch's low-precision (bf16; fp16 on CUDA) img2img output against its own fp32 output.

    ``model`` "demo" loads ``retouch.load_model("demo")``; if that fails the tiny model is used and the
    reason is returned in ``note``.
    """
    from retouch.engine import Engine
    from retouch.params import Img2Img

    note = ""
    bundle = None
    if model == "demo":
        try:
            from retouch import load_model

            bundle = load_model("demo")
        except Exception as e:  # the demo model may not exist yet
            note = f"demo model unavailable ({type(e).__name__}: {e}); used the tiny model"
    if bundle is None:
        parts = configs.components(size, False, SEED)
        bundle = configs.bundle(parts, name=f"bench-{size}")
        model = size
    else:
        image_size = DEMO_SIZE
    bundle32 = copy.deepcopy(bundle)
    job = Img2Img(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        seed=SEED,
        steps=20,
        cfg_scale=CFG_SCALE,
        width=image_size,
        height=image_size,
        init_images=[init_image(image_size)],
        denoising_strength=0.75,
    )
    dev = dev or _device({})
    low = Engine(bundle, device=dev["device"], precision=dev["quality_low"])
    a = np.asarray(low.run(job).images[0], dtype=np.float64)
    b = np.asarray(Engine(bundle32, device=dev["device"], precision="fp32").run(job).images[0], dtype=np.float64)
    mse = float(((a - b) ** 2).mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    return {
        "model": model,
        "size": image_size,
        "steps": 20,
        "strength": 0.75,
        "psnr_db": psnr,
        "low_dtype": str(low.dtype).replace("torch.", ""),
        "note": note,
    }
