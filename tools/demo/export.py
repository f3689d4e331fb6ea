"""Convert the trained demo model (train.py's export_diffusers.pt) to the shipped single-file checkpoint.

    .venv/bin/python tools/demo/export.py runs/demo3/export_diffusers.pt src/retouch/demo/demo.safetensors
    .venv/bin/python tools/demo/export.py runs/demo3-inpaint/export_diffusers.pt \
        src/retouch/demo/demo-inpaint.safetensors --no-config-folder

The file is in the original SD (LDM) key layout, stored in bfloat16 (the CPU's fast 16-bit type; float16
has no fast path on CPUs), with the diffusers configs embedded in its metadata so ``load_model`` builds
the demo-sized architecture without a config folder. The same configs are written as a config-only
diffusers folder next to it (``config/``) for tools that want one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402


def bundle_from_export(path: Path, vae_path: Path | None = None):  # noqa: ANN201
    """A ModelBundle (family sd1) holding the exported EMA weights, in float32.

    ``vae_path``: a VAE state dict to use instead of the exported one (decoder.py's fine-tuned VAE).
    """
    from retouch.models.bundle import ModelBundle
    from retouch.models.families import family_by_name
    from retouch.models.tokenizers import clip_tokenizer

    state = torch.load(path, weights_only=False)
    channels = state["unet"]["conv_in.weight"].shape[1]  # 9: the inpainting variant (inpaint.py)
    unet, vae, text = models.build_unet(in_channels=channels), models.build_vae(), models.build_text_encoder()
    unet.load_state_dict(state["unet"])
    vae.load_state_dict(torch.load(vae_path) if vae_path is not None else state["vae"])
    text.load_state_dict(state["text"])
    return ModelBundle(
        family=family_by_name("sd1-inpaint" if channels == 9 else "sd1"), unet=unet.eval(), vae=vae.eval(),
        text_encoders=(text.eval(),), tokenizers=(clip_tokenizer(),), name="demo-inpaint" if channels == 9 else "demo",
    ), state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("target", type=Path)
    ap.add_argument("--vae", type=Path, default=None, help="VAE state dict (e.g. runs/demo/vae_decoder.pt)")
    ap.add_argument("--no-config-folder", action="store_true")
    args = ap.parse_args()
    from retouch.models.ldm_layout import save_ldm_checkpoint

    bundle, state = bundle_from_export(args.source, args.vae)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    save_ldm_checkpoint(bundle, args.target, dtype=torch.bfloat16)
    if not args.no_config_folder:
        models.write_config_folder(args.target.parent / "config")
    size = args.target.stat().st_size / 1e6
    print(f"wrote {args.target} ({size:.1f} MB) from step {state['step']} ({state['minutes']:.1f} min of UNet training)")


if __name__ == "__main__":
    main()
