"""Merge and restore a rank-32 LoRA on an SD1.5-sized UNet + CLIP ViT-L text encoder (issue #11, item 5).

    .venv/bin/python bench/lora_merge.py [--threads 2] [--repeat 3] [--rank 32] [--size sd15|tiny]

The modules are built from ``configs.SD15_UNET``/``SD15_TEXT`` with seeded random weights (fp32). The
LoRA is a kohya-format ``.safetensors`` (fp16 factors, alpha = rank / 2) with a module for every
attention projection (``to_q/to_k/to_v/to_out.0`` of ``attn1``/``attn2``), ``proj_in``/``proj_out`` and
feed-forward (``ff.net.0.proj``, ``ff.net.2``) of the UNet, and every ``q/k/v/out_proj``, ``fc1``,
``fc2`` of the text encoder, written to a temporary folder and read through ``NetworkPatcher.load``.

Reported: file load time, merge and restore times (median of ``--repeat``), the bytes the backup holds
against the size of the whole UNet (+ text encoder), the load average, and the CPU (``lscpu``, torch's
CPU capability). ``--verify`` (default) checks that restoring gives every parameter back bit for bit by
comparing a SHA-256 of all parameter bytes before and after (no second copy of the model is held).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import configs  # noqa: E402
import measure  # noqa: E402
import torch  # noqa: E402

_UNET_LEAVES = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
_TE_LEAVES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def build(size: str) -> tuple[Any, Any]:
    """(UNet, text encoder) with seeded random weights."""
    if size == "tiny":
        parts = configs.components("tiny", inpaint=False)
        return parts["unet"], parts["text_encoder"]
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**configs.SD15_UNET).eval(), CLIPTextModel(CLIPTextConfig(**configs.SD15_TEXT)).eval()


def kohya_lora(unet: Any, text_encoder: Any, rank: int) -> dict[str, torch.Tensor]:
    """A kohya-format rank-``rank`` LoRA over the attention/proj/ff layers of both models."""
    gen = torch.Generator().manual_seed(1)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, model, leaves in (("lora_unet_", unet, _UNET_LEAVES), ("lora_te_text_model_", text_encoder, _TE_LEAVES)):
        for path, module in model.named_modules():
            if not path.endswith(leaves) or not isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                continue
            out_features, in_features = module.weight.shape[:2]
            name = prefix + path.removeprefix("text_model.").replace(".", "_")
            kernel = (1, 1) if module.weight.ndim == 4 else ()
            tensors[f"{name}.lora_down.weight"] = (torch.randn(rank, in_features, *kernel, generator=gen) * 0.01).half()
            tensors[f"{name}.lora_up.weight"] = (torch.randn(out_features, rank, *kernel, generator=gen) * 0.01).half()
            tensors[f"{name}.alpha"] = torch.tensor(rank / 2, dtype=torch.float16)
    return tensors


def params_digest(*models: Any) -> str:
    digest = hashlib.sha256()
    for model in models:
        for name, p in model.state_dict().items():
            digest.update(name.encode())
            digest.update(p.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def nbytes(*models: Any) -> int:
    return sum(p.numel() * p.element_size() for m in models for p in m.parameters())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("sd15", "tiny"), default="sd15")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-verify", dest="verify", action="store_false")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from safetensors.torch import save_file

    from retouch.models.bundle import ModelBundle
    from retouch.models.families import SD1
    from retouch.models.networks.patcher import ActiveNetwork, NetworkPatcher

    info = measure.machine()
    print(f"CPU: {info.get('cpu')} ({info.get('cores')} logical CPUs), flags {' '.join(info.get('flags', []))}")
    print(f"torch {info['torch']}, CPU capability {torch.backends.cpu.get_cpu_capability()}, threads {args.threads}")
    unet, text_encoder = build(args.size)
    bundle = ModelBundle(SD1, unet, None, (text_encoder,), ())
    tensors = kohya_lora(unet, text_encoder, args.rank)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench_lora.safetensors"
        save_file(tensors, path)
        print(f"LoRA: {len(tensors) // 3} modules, rank {args.rank}, {path.stat().st_size / 2**20:.1f} MiB (fp16)")
        before = params_digest(unet, text_encoder) if args.verify else ""
        patcher = NetworkPatcher(bundle)
        t0 = time.perf_counter()
        network = patcher.load(path)
        load_s = time.perf_counter() - t0
        merges, restores, backup = [], [], 0
        for i in range(args.repeat):
            active = [ActiveNetwork(network, te=1.0, unet=0.8 if i % 2 else 1.0)]
            t0 = time.perf_counter()
            patcher.apply(active)
            merges.append(time.perf_counter() - t0)
            backup = patcher.backup_bytes
            t0 = time.perf_counter()
            patcher.apply([])
            restores.append(time.perf_counter() - t0)
        exact = params_digest(unet, text_encoder) == before if args.verify else None
    whole = nbytes(unet)
    print(f"load (read + bind, incl. index build): {load_s:.3f} s; {len(network.modules)} modules bound, "
          f"{len(network.unmatched)} keys unmatched")
    print(f"merge:   median {statistics.median(merges):.3f} s  (runs: {', '.join(f'{t:.3f}' for t in merges)})")
    print(f"restore: median {statistics.median(restores):.3f} s  (runs: {', '.join(f'{t:.3f}' for t in restores)})")
    print(f"backup held while merged: {backup / 2**20:.1f} MiB = {backup / whole:.1%} of the UNet "
          f"({whole / 2**20:.0f} MiB; UNet + text encoder {nbytes(unet, text_encoder) / 2**20:.0f} MiB); 0 after restore")
    if exact is not None:
        print(f"restore bit-exact (sha256 of all parameters): {exact}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0 if exact in (True, None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
