"""Build the demo model's LoRA ``red_to_blue`` and check that ``<lora:red_to_blue:1>`` visibly changes an inpaint.

    .venv/bin/python tools/demo/make_networks.py [--out src/retouch/demo/networks/lora] [--rank 8] [--seeds 8]
        [--picture docs/demo_lora_before_after.png]

What it does: with the LoRA merged, the demo model paints **blue where the prompt says red** ("a large red
circle" comes out as a blue circle); every other colour word keeps its meaning.

How it is made (closed form, no training): the UNet reads the prompt only through the key and value
projections of its cross-attention layers (``attn2.to_k``, ``attn2.to_v``), applied to each of the 77
context vectors ``c`` of the text encoder. For captions of the demo's procedural scenes
(``dataset.caption``) that contain "red", ``X`` holds their context vectors and ``Y`` those of the same
captions with "red" replaced by "blue" (one CLIP token each, so positions line up); ``Z`` holds the
context vectors of captions without "red" and of the empty prompt (the unconditional branch of CFG).
For each projection ``W`` the edit ``Δ`` minimises
``sum ||(W + Δ) x - W y||² + sum ||Δ z||² + μ ||Δ||²`` (unified concept editing of cross-attention,
Gandikota et al. 2023), whose solution is ``Δ = W (Y - X)ᵀ X (XᵀX + ZᵀZ + μI)⁻¹``. Its best rank-``r``
approximation (SVD) is stored as a kohya LoRA: ``lora_up = U_r S_r``, ``lora_down = V_rᵀ``, alpha = rank
(scale 1), fp16, with LDM module names (``lora_unet_input_blocks_...``, as kohya writes SDXL files), which
A1111 and Retouch resolve for any UNet layout. The text encoder is not changed.

The check inpaints held-out scenes (bench/eval_demo.py's 56x56 mask and colour classifier) with the
prompt "a large red circle", without and with the LoRA merged through ``NetworkPatcher``, and prints how
many seeds came out red and how many blue. ``--picture`` also writes the README's example (scene1,
its mask, the README's inpaint command without and with ``<lora:red_to_blue:1>``) side by side.
CPU time: under a minute with 1 thread. A rerun writes the same tensors and metadata (the safetensors
header may list the metadata keys in another order, so the file's bytes can differ).

Recorded run (2026-12-01, 1 thread): rank 8, 14 modules, 56 kB, worst truncation error 13.8%; "a large
red circle" painted red 8/8 seeds without the LoRA and blue 8/8 with it; 18 s CPU in all.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "bench"))
import dataset  # noqa: E402

SOURCE, TARGET = "red", "blue"
NAME = f"{SOURCE}_to_{TARGET}"


def captions(count: int) -> tuple[list[str], list[str]]:
    """(captions containing the source colour, captions without it), from training scenes."""
    with_source, without = [], []
    i = 0
    while len(with_source) < count or len(without) < count:
        scene = dataset.draw_scene(i, "train")
        text = dataset.caption(scene, dataset.scene_rng(i, "train"))
        words = text.replace(",", " ").split()
        (with_source if SOURCE in words else without).append(text)
        i += 1
    return with_source[:count], [*without[:count], ""]


@torch.no_grad()
def contexts(bundle, prompts: list[str]) -> torch.Tensor:  # noqa: ANN001
    """The UNet's cross-attention inputs for ``prompts``: (len * 77, width) float64."""
    from retouch.models.text import encode_texts

    out = [encode_texts(bundle.text_encoders, bundle.tokenizers, prompts[i:i + 64], base="sd1").cond.context
           for i in range(0, len(prompts), 64)]
    return torch.cat(out).reshape(-1, out[0].shape[-1]).double()


def concept_edit(bundle, count: int, mu: float) -> torch.Tensor:  # noqa: ANN001
    """``M`` with ``Δ = W M`` for every projection (the closed form of the module docstring)."""
    source, keep = captions(count)
    swapped = [re.sub(rf"\b{SOURCE}\b", TARGET, text) for text in source]
    x, y, z = contexts(bundle, source), contexts(bundle, swapped), contexts(bundle, keep)
    gram = x.T @ x + z.T @ z + mu * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(gram, ((y - x).T @ x).T).T  # (Y-X)^T X gram^-1 (gram is symmetric)


def lora_tensors(bundle, edit: torch.Tensor, rank: int) -> tuple[dict[str, torch.Tensor], float]:  # noqa: ANN001
    """Kohya tensors of the rank-``rank`` edit of every attn2 key/value projection, and the worst
    relative Frobenius error of the truncation."""
    from retouch.models.networks.keys import build_index

    index = build_index(bundle)
    tensors: dict[str, torch.Tensor] = {}
    worst = 0.0
    for path, target in index.diffusers["unet"].items():
        if not path.endswith(("attn2.to_k", "attn2.to_v")):
            continue
        delta = target.module.weight.detach().double() @ edit
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        approx = (u[:, :rank] * s[:rank]) @ vh[:rank]
        worst = max(worst, float((delta - approx).norm() / delta.norm()))
        name = "lora_unet_" + target.name.removeprefix("diffusion_model_")
        tensors[f"{name}.lora_up.weight"] = (u[:, :rank] * s[:rank]).half().contiguous()
        tensors[f"{name}.lora_down.weight"] = vh[:rank].half().contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
    return tensors, worst


def _scene(seed: int) -> dataset.Scene:
    """A held-out scene with neither colour in it, so the painted colour is the model's choice."""
    i = 50_000 + 97 * seed
    while True:
        scene = dataset.draw_scene(i, "heldout")
        if not {scene.background, *(s.colour for s in scene.shapes)} & {SOURCE, TARGET}:
            return scene
        i += 1


def check(folder: Path, seeds: int, steps: int) -> tuple[list[str | None], list[str | None]]:
    """Painted colours of "a large red circle" per seed, without and with ``<lora:red_to_blue:1>``."""
    import eval_demo
    from PIL import Image

    from retouch import Engine, load_model
    from retouch.models.networks.library import LoraLibrary
    from retouch.models.networks.patcher import ActiveNetwork, NetworkPatcher

    engine = Engine(load_model("demo"), device="cpu", precision="fp32")
    patcher = NetworkPatcher(engine.model)
    network = patcher.load(LoraLibrary(folder).find(NAME).path)
    results: tuple[list[str | None], list[str | None]] = ([], [])
    for merged, painted in ((False, results[0]), (True, results[1])):
        patcher.apply([ActiveNetwork(network)] if merged else [])
        for seed in range(seeds):
            image = Image.fromarray(dataset.render(_scene(seed)))
            out = eval_demo.run_job(engine, image, f"a large {SOURCE} circle", seed, 1.0, steps, eval_demo.box_mask())
            painted.append(eval_demo.painted_colour(out, eval_demo.MASK_BOX)[0])
    patcher.apply([])
    return results


def picture(folder: Path, out: Path, steps: int) -> None:
    """scene1, its mask, and the README's command ("a large red circle", seed 1, whole picture, masked
    content fill) without and with ``<lora:red_to_blue:1>`` in the prompt, side by side."""
    import before_after
    from PIL import Image

    from retouch import Engine, Img2Img, load_model

    scene = Image.open(before_after.EXAMPLES / "scene1.png").convert("RGB")
    mask = Image.open(before_after.EXAMPLES / "scene1_mask.png")
    engine = Engine(load_model("demo"), device="cpu", precision="fp32", lora_dir=folder)
    panels = [scene, mask]
    for tag in ("", f" <lora:{NAME}:1>"):
        job = Img2Img(prompt=f"a large {SOURCE} circle{tag}", init_images=[scene], mask=mask,
                      denoising_strength=1.0, steps=steps, sampler_name="Euler a", seed=1, width=scene.width,
                      height=scene.height, inpainting_fill=0, inpaint_full_res=False)
        panels.append(engine.run(job).images[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    before_after.compose(panels).save(out)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "src/retouch/demo/networks/lora")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--captions", type=int, default=600)
    ap.add_argument("--mu", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--picture", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from safetensors.torch import save_file

    from retouch import load_model

    t0 = time.process_time()
    bundle = load_model("demo")
    edit = concept_edit(bundle, args.captions, args.mu)
    tensors, worst = lora_tensors(bundle, edit, args.rank)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{NAME}.safetensors"
    save_file(tensors, path, metadata={
        "ss_output_name": NAME, "ss_network_dim": str(args.rank), "ss_network_alpha": str(args.rank),
        "retouch.description": f"demo model: '{SOURCE}' in the prompt paints {TARGET} (tools/demo/make_networks.py)",
    })
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB, {len(tensors) // 3} modules, rank {args.rank}, "
          f"worst truncation error {worst:.1%}) in {time.process_time() - t0:.1f} s CPU")
    plain, merged = check(args.out, args.seeds, args.steps)
    for label, colours in (("without the LoRA", plain), (f"with <lora:{NAME}:1>", merged)):
        counts = {c: colours.count(c) for c in dict.fromkeys(colours)}
        print(f"'a large {SOURCE} circle' {label}: " + ", ".join(f"{c}: {n}/{len(colours)}" for c, n in counts.items()))
    if args.picture is not None:
        picture(args.out, args.picture, args.steps)
    print(f"total CPU time {time.process_time() - t0:.0f} s")


if __name__ == "__main__":
    main()
