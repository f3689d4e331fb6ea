"""Peak RSS per phase of one 512x512 img2img at strength 0.5, each implementation in its own process.

Usage::

    PYTHONPATH=src .venv/bin/python bench/memory.py [--size 512] [--steps 2] [--impls retouch diffusers]
        [--before-src DIR] [--max-memory 3G]

The parent writes SD1.5-sized random weights (``bench/configs.py``, seed 0) once as an fp32 LDM
single file (``--file``, default ``/tmp/retouch-bench-sd15-fp32.safetensors``), then runs every
implementation in a fresh interpreter on that same file. Each child resets the kernel's peak-RSS mark
(VmHWM, ``/proc/self/clear_refs``) at every phase boundary and reports the peak of each phase:
load, text encode, VAE encode, UNet steps, VAE decode (``measure.PeakMemory``). Impls:

* ``retouch``: this checkout (``--max-memory`` passes the budget: the tiled VAE switches on under it);
* ``retouch-before``: the same child code on another source tree (``--before-src``, e.g. an exported
  older commit: ``git archive <commit> src | tar -x -C /tmp/before``);
* ``diffusers``: ``StableDiffusionImg2ImgPipeline.from_single_file`` on the same file (bundled SD1
  config folder, offline), fp32, with its default settings (no VAE tiling or slicing).

Retouch runs fp32 here (``--precision fp32``) so the three hold the same weights. The text and VAE
encodes are run first through the engine's runtime; the job then finds them in its caches, so its own
time splits into the UNet steps (up to the last ``on_step``) and the decode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PROMPT, NEGATIVE = "a photo of a red house by a lake", "blurry"
PHASES = ("load", "text encode", "VAE encode", "UNet steps", "VAE decode")


def _image(size: int) -> Any:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 255 // (size - 1), y * 255 // (size - 1), (x + y) * 127 // (size - 1)], -1)
    return Image.fromarray(rgb.astype(np.uint8))


def write_weights(path: Path) -> None:
    """The seeded SD1.5-sized components as one fp32 LDM-layout safetensors file (skipped when present)."""
    if path.is_file():
        return
    import configs

    from retouch.models.ldm_layout import save_ldm_checkpoint

    bundle = configs.bundle(configs.components("sd15", inpaint=False))
    tmp = path.with_suffix(".part")
    save_ldm_checkpoint(bundle, tmp)
    tmp.rename(path)


def _retouch(file: str, size: int, steps: int, max_memory: str | None, peak: Any) -> dict[str, float]:
    import torch

    from retouch import Engine, Img2Img, load_model

    torch.set_num_threads(1)
    kwargs = {} if max_memory is None else {"max_memory": max_memory}
    engine = Engine(load_model(file), device="cpu", precision="fp32", **kwargs)
    out = {"load": peak.boundary()}
    rt = engine.runtime
    for text in (PROMPT, NEGATIVE):
        rt.encode_texts([text], clip_skip=1, emphasis="Original", embeddings=engine.networks.embeddings,
                        cache_key=engine.networks.cache_key())
    out["text encode"] = peak.boundary()
    image = _image(size)
    rt.encode([image], [1])
    out["VAE encode"] = peak.boundary()
    last: dict[str, float] = {}

    def on_step(info: Any) -> None:
        if info.step == info.steps:
            last["UNet steps"] = peak.boundary()

    job = Img2Img(init_images=(image,), prompt=PROMPT, negative_prompt=NEGATIVE, steps=steps,
                  denoising_strength=0.5, seed=1, width=size, height=size, sampler_name="Euler")
    result = engine.run(job, on_step=on_step)
    out.update(last)
    out["VAE decode"] = peak.boundary()
    out["vae_encode_cached"] = result.parameters.get("vae_encode_cached", -1)
    tiles = getattr(rt, "vae_tiles", None)
    if tiles is not None:
        out["vae_tiles"] = tiles
    return out


def diffusers_img2img(file: str) -> Any:
    """diffusers' img2img pipeline on the single file, fp32, offline (bundled SD1 config), Euler, no progress bar."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline

    from retouch.models.tokenizers import CONFIG_ROOT

    pipe = StableDiffusionImg2ImgPipeline.from_single_file(
        file, config=str(CONFIG_ROOT / "sd1"), local_files_only=True, torch_dtype=torch.float32,
        safety_checker=None, requires_safety_checker=False,
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _diffusers(file: str, size: int, steps: int, peak: Any) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    pipe = diffusers_img2img(file)
    out = {"load": peak.boundary()}
    with torch.inference_mode():
        cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
        out["text encode"] = peak.boundary()
        pixels = pipe.image_processor.preprocess(_image(size))
        gen = torch.Generator("cpu").manual_seed(1)
        latents = pipe.vae.encode(pixels).latent_dist.sample(gen) * pipe.vae.config.scaling_factor
        out["VAE encode"] = peak.boundary()
        z = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, image=latents, strength=0.5,
                 num_inference_steps=steps, output_type="latent", generator=gen).images
        out["UNet steps"] = peak.boundary()
        pipe.vae.decode(z / pipe.vae.config.scaling_factor)
        out["VAE decode"] = peak.boundary()
    return out


def child(args: argparse.Namespace) -> None:
    from measure import PeakMemory

    peak = PeakMemory()
    if args.child == "diffusers":
        out = _diffusers(args.file, args.size, args.steps, peak)
    else:
        out = _retouch(args.file, args.size, args.steps, args.max_memory, peak)
    out["peak"] = peak.overall
    print(json.dumps(out))


def _run_child(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    src = args.before_src if impl == "retouch-before" else str(HERE.parent / "src")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, __file__, "--child", "diffusers" if impl == "diffusers" else "retouch",
           "--file", args.file, "--size", str(args.size), "--steps", str(args.steps)]
    if impl == "retouch" and args.max_memory:
        cmd += ["--max-memory", args.max_memory]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", choices=["retouch", "diffusers"], help=argparse.SUPPRESS)
    ap.add_argument("--file", default="/tmp/retouch-bench-sd15-fp32.safetensors")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=2, help="steps at strength 0.5")
    ap.add_argument("--max-memory", default=None, help="Retouch's budget, e.g. 6G (default: MemAvailable)")
    ap.add_argument("--before-src", default=None, help="source tree for the retouch-before child")
    ap.add_argument("--impls", nargs="+", default=["retouch-before", "retouch", "diffusers"],
                    choices=["retouch-before", "retouch", "diffusers"])
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from allocator import cpu_model

    impls = [i for i in args.impls if i != "retouch-before" or args.before_src]
    write_weights(Path(args.file))
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); {args.size}x{args.size} img2img, strength 0.5, "
          f"{args.steps} steps, fp32 single file {Path(args.file).stat().st_size / 2**30:.2f} GiB; peak RSS MiB")
    print("| impl | " + " | ".join(PHASES) + " | peak | notes |")
    print("|---" * (len(PHASES) + 3) + "|")
    failed = False
    for impl in impls:
        r = _run_child(impl, args)
        if "error" in r:
            failed = True
            print(f"| {impl} | failed: {r['error']} |")
            continue
        cells = " | ".join(f"{r.get(p, float('nan')):.0f}" for p in PHASES)
        notes = f"VAE tiles {r['vae_tiles']}" if "vae_tiles" in r else ""
        print(f"| {impl} | {cells} | {r['peak']:.0f} | {notes} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
