"""End to end against the peers on one fp32 single file (issue #17), each implementation in a fresh process.

Usage::

    PYTHONPATH=src .venv/bin/python bench/peers.py [--evals 6] [--size 512] [--threads 2] [--repeat 1]
        [--impls NAME ...] [--out bench/results/<date>-peers.md]
    .venv/bin/python bench/run.py peers ...        # the same, through the benchmark's entry point

The parent writes SD1.5-sized random weights (``bench/configs.py``, seed 0) once as an fp32 LDM single file
(``memory.write_weights``), then runs every implementation in its own interpreter on that file: 512x512
img2img of ``scenarios.init_image`` at strength 0.5, Euler, CFG 7, with **equal UNet evaluations**
(``--evals``; A1111/Retouch run ``int(0.5 * steps) + 1`` of them, diffusers and stable-diffusion.cpp
``int(steps * 0.5)``: its ``t_enc`` in ``generate_image``). Each child reports the model load time, the
job time (one call after the load: the first job a user sees, lazy kernel set-up included, the same for
every side), the VAE encode/decode times (hooks on the torch VAE; stable-diffusion.cpp's own log, which
also gives its text-encoder time), and the process's peak RSS
(VmHWM, imports included; ``rss_after_imports`` says how much of it the imports are).

Implementations (``IMPLS``):

* ``retouch``: the default path (``precision="auto"``: bf16 where oneDNN runs it natively, else fp32);
* ``retouch-fp32``: the exact path in fp32, the reference the PSNR column compares with;
* ``retouch-ngms``, ``retouch-skip-early``, ``retouch-tome``, ``retouch-cache``: one speed option each
  (A1111's ``s_min_uncond`` 1.0, ``skip_early_cond`` 0.2, ``token_merging_ratio`` 0.5; the feature cache
  at interval 2, depth 1) on the default precision;
* ``retouch-fast``: ``Engine(preset="fast")`` (bf16 where native, NGMS 1.0, token merging 0.5, feature
  cache interval 2, depth 2);
* ``retouch-fast-cache``, ``retouch-fast-no-cache``: the preset with the cache at depth 1, or off (a job's
  own ``feature_cache_interval`` wins over the preset's; 1 is off);
* ``retouch-openvino``: ``Engine(backend="openvino")`` (not in the default list: converting an SD1.5-sized
  UNet takes minutes and about 6 GB; the IR is cached under ``--ov-cache``);
* ``diffusers``: ``StableDiffusionImg2ImgPipeline.from_single_file``, fp32, its defaults;
* ``sdcpp-f32``, ``sdcpp-q8_0``: stable-diffusion.cpp through ``stable-diffusion-cpp-python`` (weights
  converted to f32 / q8_0 at load; skipped with the reason when the package is absent).

The output column ``PSNR vs retouch-fp32`` is of the 8-bit final images on these random weights (it shows
that an option changes the result and how much, not whether a real model's picture still looks right;
``--demo`` adds that check on the demo model at its training size: each Retouch setting's img2img at
strength 0.5 on held-out scenes against the exact fp32 path).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scenarios import CFG_SCALE, NEGATIVE, PROMPT, SEED, init_image, steps_for  # noqa: E402

STRENGTH = 0.5
#: name -> (Engine keyword arguments, Img2Img fields) for the Retouch settings.
RETOUCH: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "retouch": ({}, {}),
    "retouch-fp32": ({"precision": "fp32"}, {}),
    "retouch-ngms": ({}, {"s_min_uncond": 1.0}),
    "retouch-skip-early": ({}, {"skip_early_cond": 0.2}),
    "retouch-tome": ({}, {"token_merging_ratio": 0.5}),
    "retouch-cache": ({}, {"feature_cache_interval": 2, "feature_cache_depth": 1}),
    "retouch-fast": ({"preset": "fast"}, {}),
    "retouch-fast-cache": ({"preset": "fast"}, {"feature_cache_interval": 2, "feature_cache_depth": 1}),
    "retouch-fast-no-cache": ({"preset": "fast"}, {"feature_cache_interval": 1}),  # 1 = off, and not 0
    "retouch-openvino": ({"backend": "openvino"}, {}),
}
SDCPP = {"sdcpp-f32": "f32", "sdcpp-q8_0": "q8_0"}
IMPLS = (*RETOUCH, "diffusers", *SDCPP)
DEFAULT_IMPLS = tuple(i for i in IMPLS if i != "retouch-openvino")
REFERENCE = "retouch-fp32"


def _psnr(a: Any, b: Any) -> float:
    import numpy as np

    mse = float(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _retouch(impl: str, args: argparse.Namespace, out: dict[str, Any]) -> Any:
    import measure
    import torch

    from retouch import Engine, Img2Img, load_model

    out["rss_after_imports"] = _status_mib("VmRSS")
    engine_kwargs, fields = RETOUCH[impl]
    if impl == "retouch-openvino":
        engine_kwargs = engine_kwargs | {"ov_cache_dir": args.ov_cache}
    t0 = time.perf_counter()
    engine = Engine(load_model(args.file), device="cpu", **engine_kwargs)
    out["load_s"] = time.perf_counter() - t0
    out["dtype"] = str(engine.dtype).removeprefix("torch.")
    bundle = engine.model
    timers = measure.Timers()
    timers.attach(bundle.unet, bundle.vae, torch.nn.Identity())  # text: Retouch runs CLIP's layers itself
    job = Img2Img(init_images=(init_image(args.size),), prompt=PROMPT, negative_prompt=NEGATIVE,
                  steps=steps_for(args.evals, STRENGTH, "a1111"), denoising_strength=STRENGTH, seed=SEED,
                  width=args.size, height=args.size, sampler_name="Euler", cfg_scale=CFG_SCALE, **fields)
    steps: list[int] = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        result = engine.run(job, on_step=lambda info: steps.append(info.step))
    out["job_s"] = time.perf_counter() - t0
    out.update(_timer_fields(timers))
    out["sampler_steps"] = len(steps)
    from retouch.infotext import split_infotext

    out["infotext_speed"] = {k: v for k, v in split_infotext(result.infotexts[0])[2].items()
                             if k in ("Preset", "Precision", "NGMS", "Skip Early CFG", "Token merging ratio",
                                      "Feature cache interval", "Feature cache depth", "Backend")}
    return result.images[0]


def _timer_fields(timers: Any) -> dict[str, Any]:
    s = timers.summary()
    return {"unet_calls_seen": s["unet_calls"], "unet_s": s["unet_total_s"], "vae_encode_s": s["vae_encode_s"],
            "vae_decode_s": s["vae_decode_s"]}


def _diffusers(args: argparse.Namespace, out: dict[str, Any]) -> Any:
    import measure
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline  # noqa: F401 (before the RSS reading)
    from memory import diffusers_img2img

    out["rss_after_imports"] = _status_mib("VmRSS")
    t0 = time.perf_counter()
    pipe = diffusers_img2img(args.file)
    out["load_s"], out["dtype"] = time.perf_counter() - t0, "float32"
    timers = measure.Timers()
    timers.attach(pipe.unet, pipe.vae, torch.nn.Identity())  # the text encoder is timed on neither side
    t0 = time.perf_counter()
    with torch.inference_mode():
        image = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, image=init_image(args.size), strength=STRENGTH,
                     num_inference_steps=steps_for(args.evals, STRENGTH, "diffusers"), guidance_scale=CFG_SCALE,
                     generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    out["job_s"] = time.perf_counter() - t0
    out.update(_timer_fields(timers))
    return image


def _sdcpp(impl: str, args: argparse.Namespace, out: dict[str, Any]) -> Any:
    from stable_diffusion_cpp import StableDiffusion

    out["rss_after_imports"] = _status_mib("VmRSS")
    t0 = time.perf_counter()
    sd = StableDiffusion(model_path=args.file, wtype=SDCPP[impl], n_threads=args.threads, verbose=True)
    out["load_s"], out["dtype"] = time.perf_counter() - t0, SDCPP[impl]
    t0 = time.perf_counter()
    images = sd.generate_image(prompt=PROMPT, negative_prompt=NEGATIVE, init_image=init_image(args.size),
                               width=args.size, height=args.size, cfg_scale=CFG_SCALE, sample_method="euler",
                               sample_steps=steps_for(args.evals, STRENGTH, "sdcpp"), strength=STRENGTH,
                               seed=SEED)
    out["job_s"] = time.perf_counter() - t0
    return images[0]


def _status_mib(key: str) -> float:
    """VmRSS or VmHWM of this process in MiB (read here: ``measure`` imports torch, which the
    stable-diffusion.cpp child must not pay for)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def _cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one implementation in this process; the image is saved under ``--images`` for the PSNR."""
    out: dict[str, Any] = {"impl": impl}
    if impl in SDCPP:
        try:
            import stable_diffusion_cpp  # noqa: F401
        except ImportError:
            return {"impl": impl, "skipped": "stable-diffusion-cpp-python is not installed "
                    "(pip install stable-diffusion-cpp-python==0.4.7: builds from source, about 5 min)"}
    if impl.startswith("retouch") or impl == "diffusers":
        import torch

        torch.set_num_threads(args.threads)
    cpu0 = _cpu_s()
    if impl in RETOUCH:
        image = _retouch(impl, args, out)
    elif impl == "diffusers":
        image = _diffusers(args, out)
    else:
        image = _sdcpp(impl, args, out)
    out["cpu_s"] = _cpu_s() - cpu0
    out["peak_rss_mib"] = _status_mib("VmHWM")
    path = Path(args.images) / f"{impl}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(path)
    out["image"] = str(path)
    return out


def _run_child(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)]),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, __file__, "--child", impl, "--file", args.file, "--size", str(args.size),
           "--evals", str(args.evals), "--threads", str(args.threads), "--images", args.images,
           "--ov-cache", args.ov_cache]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["failed"]
        return {"impl": impl, "error": tail[0][:300]}
    r = json.loads(done.stdout.strip().splitlines()[-1])
    r["process_s"] = wall
    r.update(_sdcpp_phases(done.stderr))
    return r


def _sdcpp_phases(log: str) -> dict[str, float]:
    """stable-diffusion.cpp's own phase times from its verbose log ("<phase> completed, taking 12.34s").

    In its image path (0.4.7, ``generate_image``) the VAE encode and the text conditioning are both timed
    from the start of the preparation, so the phase that finishes second took the difference (measured
    here: the text conditioning finishes first, 0.5 s, and the encode ends at 30.8 s).
    """
    seen = {key: float(m.group(1)) for key in ("encode_first_stage", "get_learned_condition", "sampling",
                                                "decode_first_stage")
            if (m := re.search(rf"\b{key} completed, taking ([0-9.]+)s", log))}
    out = {"sdcpp_sampling_s": seen.get("sampling"), "vae_decode_s": seen.get("decode_first_stage")}
    enc, text = seen.get("encode_first_stage"), seen.get("get_learned_condition")
    if enc is not None and text is not None:
        first = min(enc, text)
        enc, text = (enc, text - first) if enc == first else (enc - first, text)
    out.update(vae_encode_s=enc, text_s=text)
    return {k: v for k, v in out.items() if v is not None}


def _cell(x: Any, fmt: str = ".1f") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def report(runs: dict[str, dict[str, Any]], header: str) -> str:
    """The markdown table: times, peak RSS, ratios against diffusers, PSNR against retouch-fp32."""
    from PIL import Image

    ref = runs.get(REFERENCE, {})
    ref_img = Image.open(ref["image"]).convert("RGB") if "image" in ref else None
    base = runs.get("diffusers", {})
    lines = [header, "",
             "| implementation | dtype | load s | job s | x diffusers (job) | UNet + rest s | VAE enc s | VAE dec s "
             "| text s | CPU s | peak RSS MiB | x diffusers (RSS) | PSNR vs retouch-fp32 dB | notes |",
             "|---" * 14 + "|"]
    for impl, r in runs.items():
        if "job_s" not in r:
            lines.append(f"| {impl} | | | | | | | | | | | | | {r.get('error') or r.get('skipped')} |")
            continue
        speed = base["job_s"] / r["job_s"] if "job_s" in base else None
        rss = r["peak_rss_mib"] / base["peak_rss_mib"] if "peak_rss_mib" in base else None
        known = sum(r.get(k, 0.0) for k in ("vae_encode_s", "vae_decode_s", "text_s"))
        rest = r["job_s"] - known if any(k in r for k in ("vae_encode_s", "vae_decode_s")) else None
        psnr = _psnr(Image.open(r["image"]).convert("RGB"), ref_img) if ref_img is not None else None
        notes = ", ".join(f"{k} {v}" for k, v in r.get("infotext_speed", {}).items())
        if "sampler_steps" in r:
            notes = f"{r['sampler_steps']} sampler steps" + (f"; {notes}" if notes else "")
        notes += f"; imports {r['rss_after_imports']:.0f} MiB"
        lines.append(
            f"| {impl} | {r['dtype']} | {_cell(r['load_s'])} | {_cell(r['job_s'])} | {_cell(speed, '.2f')} | "
            f"{_cell(rest)} | {_cell(r.get('vae_encode_s'))} | {_cell(r.get('vae_decode_s'))} | "
            f"{_cell(r.get('text_s'), '.2f')} | {_cell(r['cpu_s'])} | {r['peak_rss_mib']:.0f} | {_cell(rss, '.2f')} | "
            f"{_cell(psnr, '.1f')} | {notes} |"
        )
    return "\n".join(lines)


def demo_quality(settings: list[str], scenes: int, evals: int) -> str:
    """Each Retouch setting on the demo model at its training size, against the exact fp32 path.

    img2img at strength 0.5, Euler, the same step count as the timed job, on ``scenes`` held-out scenes
    (``tools/demo/dataset.py``) with their captions; the PSNR of the 8-bit result against the fp32 exact
    path's result for the same scene and seed (mean and min). Runs in this process (about a second a job).
    """
    import numpy as np
    import torch
    from PIL import Image

    from retouch import Engine, Img2Img, load_model

    sys.path.insert(0, str(HERE.parent / "tools" / "demo"))
    import dataset

    torch.set_num_threads(os.cpu_count() or 1)
    inputs = [dataset.draw_scene(50_000 + i, "heldout") for i in range(scenes)]
    outputs: dict[str, list[Any]] = {}
    for impl in [REFERENCE, *[s for s in settings if s != REFERENCE]]:
        engine_kwargs, fields = RETOUCH[impl]
        engine = Engine(load_model("demo"), device="cpu", **engine_kwargs)
        outputs[impl] = []
        for i, scene in enumerate(inputs):
            job = Img2Img(init_images=(Image.fromarray(dataset.render(scene)),), prompt=dataset.full_caption(scene),
                          steps=steps_for(evals, STRENGTH, "a1111"), denoising_strength=STRENGTH, seed=SEED + i,
                          width=dataset.SIZE, height=dataset.SIZE, sampler_name="Euler", cfg_scale=CFG_SCALE,
                          **fields)
            outputs[impl].append(np.asarray(engine.run(job).images[0].convert("RGB")))
    lines = [f"Demo model ({dataset.SIZE}x{dataset.SIZE}, its training size), img2img strength {STRENGTH}, Euler, "
             f"{steps_for(evals, STRENGTH, 'a1111')} steps, {scenes} held-out scenes: PSNR of each setting against "
             f"the fp32 exact path.", "", "| setting | PSNR mean dB | PSNR min dB |", "|---|---|---|"]
    for impl, images in outputs.items():
        if impl == REFERENCE:
            continue
        values = [_psnr(a, b) for a, b in zip(images, outputs[REFERENCE], strict=True)]
        lines.append(f"| {impl} | {np.mean(values):.1f} | {np.min(values):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--file", default="/tmp/retouch-bench-sd15-fp32.safetensors")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--evals", type=int, default=6, help="UNet evaluations (CFG calls) per job, every side")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=1, help="runs per implementation, alternating order; min kept")
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=list(DEFAULT_IMPLS))
    ap.add_argument("--images", default="/tmp/retouch-bench-peers", help="where the children save their images")
    ap.add_argument("--ov-cache", default="/tmp/retouch-bench-ov", help="OpenVINO IR cache (retouch-openvino)")
    ap.add_argument("--out", type=Path, help="write the markdown report here and the raw JSON beside it")
    ap.add_argument("--demo-scenes", type=int, default=6, help="scenes for the demo-model quality table (0 = off)")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    if args.evals < 1 or args.repeat < 1:
        ap.error("--evals and --repeat must be at least 1")
    import measure
    from allocator import cpu_model
    from memory import write_weights

    write_weights(Path(args.file))
    machine = measure.machine()
    header = (
        f"# End to end against the peers, {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n\n"
        f"CPU: {cpu_model()} ({os.cpu_count()} cores, torch capability "
        f"{__import__('torch').backends.cpu.get_cpu_capability()}, native bf16 {machine['mkldnn_bf16']}); "
        f"torch {machine['torch']}, diffusers {machine['diffusers']}; {args.threads} threads every side.\n"
        f"Job: {args.size}x{args.size} img2img, strength {STRENGTH}, Euler, CFG {CFG_SCALE}, {args.evals} UNet "
        f"evaluations each (Retouch {steps_for(args.evals, STRENGTH, 'a1111')} steps, diffusers "
        f"{steps_for(args.evals, STRENGTH, 'diffusers')}, stable-diffusion.cpp {steps_for(args.evals, STRENGTH, 'sdcpp')}"
        f"); SD1.5-sized random weights, "
        f"one fp32 single file ({Path(args.file).stat().st_size / 2**30:.2f} GiB) loaded by every side. "
        f"Each implementation in a fresh process; job = one call after the load; min of {args.repeat}."
    )
    print(header.splitlines()[2], file=sys.stderr)
    runs: dict[str, dict[str, Any]] = {}
    for rep in range(args.repeat):
        for impl in args.impls if rep % 2 == 0 else args.impls[::-1]:
            r = _run_child(impl, args)
            print(f"[peers] {impl}: " + (f"job {r['job_s']:.1f}s, peak {r['peak_rss_mib']:.0f} MiB"
                                         if "job_s" in r else str(r.get("error") or r.get("skipped"))),
                  file=sys.stderr, flush=True)
            if impl not in runs or r.get("job_s", math.inf) < runs[impl].get("job_s", math.inf):
                runs[impl] = r
    text = report({i: runs[i] for i in args.impls}, header)
    settings = [i for i in args.impls if i in RETOUCH and i != "retouch-openvino"]
    if args.demo_scenes > 0 and settings:
        text += "\n\n" + demo_quality(settings, args.demo_scenes, args.evals)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, "runs": runs}, indent=1) + "\n")
    return 1 if any("error" in r for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
