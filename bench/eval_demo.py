"""Evaluate the shipped demo model through Retouch's public API (issue #6, "Done when").

    .venv/bin/python bench/eval_demo.py [--model demo] [--seeds 20] [--steps 20] [--skip-speed]
        [--feature-cache N --feature-cache-depth D] [--ngms S] [--skip-early-cfg F]

Prints, for scenes the training never saw (dataset.py's held-out split):
1. Inpainting prompt adherence: a 56x56 mask, prompt "a large <colour> <shape>"; a seed passes when the
   palette colour nearest to the mean of the painted mask pixels (those differing clearly, > 60 in RGB
   distance, from the median colour of the ring just outside the mask) is the asked colour.
2. Unmasked area: with overlay on, pixels farther than 3 x mask_blur from the mask are unchanged.
3. Fidelity: img2img at denoising strength 0.3 with the scene's caption; PSNR against the input.
4. Freedom: strength 1.0 with a prompt naming a different scene; the dominant palette colour of the
   output (its background) is the one asked.
5. Speed: wall time of the README's main command (a subprocess, imports and model load included).
0. First, the autoencoder alone: PSNR of the 8-bit VAE round trip (posterior mode) on 32 held-out scenes
   (mean, min) and on a scene unlike the training set (a yellow disc on blue, with a thin line and text).
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "demo"))
import dataset  # noqa: E402

MASK_BOX = (36, 36, 92, 92)  # 56x56, left, top, right, bottom
PAINT_THRESHOLD = 60.0
SPEED_COMMAND = (
    ".venv/bin/retouch inpaint src/retouch/demo/examples/scene1.png --mask src/retouch/demo/examples/scene1_mask.png "
    "-p 'a large red circle' -o {out} --seed 1 --steps 20 --sampler 'Euler a' --denoise 1.0 --masked-content fill"
)


def box_mask(box: tuple[int, int, int, int] = MASK_BOX) -> Image.Image:
    m = np.zeros((dataset.SIZE, dataset.SIZE), np.uint8)
    m[box[1]:box[3], box[0]:box[2]] = 255
    return Image.fromarray(m, mode="L")


def ring_colour(img: np.ndarray, box: tuple[int, int, int, int], width: int = 6) -> np.ndarray:
    """Median colour of the band of ``width`` pixels just outside ``box``."""
    left, top, right, bottom = box
    outer = np.zeros(img.shape[:2], bool)
    outer[max(top - width, 0):bottom + width, max(left - width, 0):right + width] = True
    outer[top:bottom, left:right] = False
    return np.median(img[outer].astype(np.float32), axis=0)


def painted_colour(out: np.ndarray, box: tuple[int, int, int, int]) -> tuple[str | None, float]:
    """(nearest palette colour of the painted mask pixels or None, painted fraction of the mask)."""
    left, top, right, bottom = box
    region = out[top:bottom, left:right].reshape(-1, 3).astype(np.float32)
    far = np.linalg.norm(region - ring_colour(out, box), axis=1) > PAINT_THRESHOLD
    if far.mean() < 0.05:
        return None, float(far.mean())
    return dataset.nearest_colour(region[far].mean(0)), float(far.mean())


def heldout_scene(colour: str, seed: int) -> dataset.Scene:
    """A held-out scene whose background and mask-overlapping shapes are not ``colour`` (so painting shows)."""
    i = seed * 97 + dataset.COLOURS.index(colour) * 7919
    while True:
        scene = dataset.draw_scene(i, "heldout")
        if scene.background != colour and all(s.colour != colour for s in scene.shapes):
            return scene
        i += 1


def off_family_scene() -> np.ndarray:
    """A yellow disc on a blue ground with a thin white line and a few letters: not in the training family."""
    from PIL import ImageDraw

    img = Image.new("RGB", (dataset.SIZE, dataset.SIZE), (40, 70, 200))
    draw = ImageDraw.Draw(img)
    draw.ellipse([30, 34, 94, 98], fill=(245, 215, 30))
    draw.line([(5, 120), (123, 100)], fill=(255, 255, 255), width=1)
    draw.text((8, 6), "RETOUCH", fill=(255, 255, 255))
    return np.asarray(img)


def eval_vae(bundle, count: int = 32) -> tuple[float, float]:  # noqa: ANN001
    """Mean and min PSNR of decode(mode(encode(x))) in 8 bits, on ``count`` held-out scenes."""
    import torch

    def round_trip(img: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        with torch.no_grad():
            vae = bundle.vae
            x = x.to(vae.dtype)
            rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.float()
        out = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte()[0].permute(1, 2, 0).numpy()
        return out

    scenes = [dataset.render(dataset.draw_scene(70_000 + i, "heldout")) for i in range(count)]
    values = [psnr(round_trip(img), img) for img in scenes]
    other = off_family_scene()
    print(f"  VAE round trip, {count} held-out scenes: PSNR mean {np.mean(values):.2f} dB, min {np.min(values):.2f} dB;"
          f" yellow disc on blue with line and text: {psnr(round_trip(other), other):.2f} dB")
    return float(np.mean(values)), float(np.min(values))


def run_job(engine, image: Image.Image, prompt: str, seed: int, strength: float, steps: int,  # noqa: ANN001
            mask: Image.Image | None = None) -> np.ndarray:
    from retouch import Img2Img

    job = Img2Img(
        prompt=prompt, init_images=[image], mask=mask, denoising_strength=strength, steps=steps,
        sampler_name="Euler a", seed=seed, width=dataset.SIZE, height=dataset.SIZE, inpaint_full_res=False,
        inpainting_fill=1, cfg_scale=7.0,
    )
    return np.asarray(engine.run(job).images[0].convert("RGB"))


def eval_inpaint(engine, colours: list[str], seeds: int, steps: int, strength: float) -> dict[str, float]:  # noqa: ANN001
    rates: dict[str, float] = {}
    unchanged_max = 0
    mask = box_mask()
    keep = np.ones((dataset.SIZE, dataset.SIZE), bool)
    keep[MASK_BOX[1] - 12:MASK_BOX[3] + 12, MASK_BOX[0] - 12:MASK_BOX[2] + 12] = False
    for colour in colours:
        hits = 0
        for seed in range(seeds):
            scene = heldout_scene(colour, seed)
            img = dataset.render(scene)
            shape = dataset.SHAPES[seed % 3]
            out = run_job(engine, Image.fromarray(img), f"a large {colour} {shape}", seed, strength, steps, mask)
            got, frac = painted_colour(out, MASK_BOX)
            hits += got == colour
            unchanged_max = max(unchanged_max, int(np.abs(out[keep].astype(int) - img[keep]).max()))
        rates[colour] = hits / seeds
        print(f"  inpaint {colour:7s}: {hits}/{seeds} = {100 * hits / seeds:.0f}%", flush=True)
    print(f"  unmasked area (> 12 px from the mask): max abs pixel change {unchanged_max}")
    return rates


class WithOptions:
    """An engine whose every job gets ``options`` (the speed options under evaluation)."""

    def __init__(self, engine, options: dict[str, object]) -> None:  # noqa: ANN001
        self.engine = engine
        self.options = options

    def run(self, job):  # noqa: ANN001, ANN201
        return self.engine.run(job.replace(**self.options))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def eval_fidelity(engine, seeds: int, steps: int) -> float:  # noqa: ANN001
    values = []
    for seed in range(seeds):
        scene = dataset.draw_scene(50_000 + seed, "heldout")
        img = dataset.render(scene)
        out = run_job(engine, Image.fromarray(img), dataset.full_caption(scene), seed, 0.3, steps)
        values.append(psnr(out, img))
    print(f"  img2img strength 0.3: PSNR mean {np.mean(values):.2f} dB, min {np.min(values):.2f} dB")
    return float(np.mean(values))


def dominant_colour(img: np.ndarray) -> str:
    names = [dataset.nearest_colour(p) for p in img[::4, ::4].reshape(-1, 3)]
    return max(set(names), key=names.count)


def eval_freedom(engine, seeds: int, steps: int) -> float:  # noqa: ANN001
    hits = 0
    for seed in range(seeds):
        scene = dataset.draw_scene(60_000 + seed, "heldout")
        options = [c for c in dataset.COLOURS if c != scene.background and all(s.colour != c for s in scene.shapes)]
        bg, fg = options[seed % len(options)], options[(seed + 1) % len(options)]
        prompt = f"a small {fg} circle on the left, on a {bg} background"
        out = run_job(engine, Image.fromarray(dataset.render(scene)), prompt, seed, 1.0, steps)
        hits += dominant_colour(out) == bg
    print(f"  strength 1.0, different scene: dominant colour as asked in {hits}/{seeds}")
    return hits / seeds


def eval_speed(command: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        proc = subprocess.run(shlex.split(command.format(out=out)), cwd=ROOT, capture_output=True, text=True)
        wall = time.time() - t0
    if proc.returncode != 0:
        print(f"  speed: command failed ({proc.returncode}): {proc.stderr[-500:]}")
        return float("nan")
    print(f"  speed: README main command took {wall:.1f} s")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--strength", type=float, default=0.9, help="inpainting denoising strength")
    ap.add_argument("--colours", default="red,green,blue,yellow,orange,purple,white,black")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--speed-command", default=SPEED_COMMAND)
    ap.add_argument("--feature-cache", type=int, default=0, help="feature_cache_interval (0 = off)")
    ap.add_argument("--feature-cache-depth", type=int, default=1)
    ap.add_argument("--ngms", type=float, default=0.0, help="s_min_uncond (0 = off)")
    ap.add_argument("--skip-early-cfg", type=float, default=0.0, help="skip_early_cond (0 = off)")
    ap.add_argument("--preset", default=None, help="Engine(preset=...), e.g. fast (default: none)")
    ap.add_argument("--precision", default="auto", help="Engine(precision=...): auto, fp32 or bf16")
    args = ap.parse_args()
    import torch

    from retouch import Engine, load_model

    torch.set_num_threads(args.threads)
    options = {"feature_cache_interval": args.feature_cache, "feature_cache_depth": args.feature_cache_depth,
               "s_min_uncond": args.ngms, "skip_early_cond": args.skip_early_cfg}
    bundle = load_model(args.model)
    base = Engine(bundle, precision=args.precision, preset=args.preset)
    engine = WithOptions(base, options)
    t0 = time.time()
    print(f"model {args.model}: {args.seeds} seeds, {args.steps} steps, Euler a, inpaint strength {args.strength}, "
          f"options {options}, preset {args.preset}, precision {base.dtype}, "
          f"cpu {torch.backends.cpu.get_cpu_capability()}")
    eval_vae(bundle)
    rates = eval_inpaint(engine, args.colours.split(","), args.seeds, args.steps, args.strength)
    good = [c for c, r in rates.items() if r >= 0.9]
    print(f"  colours at >= 90%: {len(good)} ({', '.join(good)})")
    eval_fidelity(engine, min(args.seeds, 10), args.steps)
    eval_freedom(engine, args.seeds, args.steps)
    if not args.skip_speed:
        command = args.speed_command
        if command == SPEED_COMMAND and args.model != "demo":
            command += f" --model {shlex.quote(args.model)}"
        eval_speed(command)
    print(f"evaluation took {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
