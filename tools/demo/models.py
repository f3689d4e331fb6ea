"""The demo model's architecture: Stable Diffusion 1.x classes at small widths, and its config folder.

``write_config_folder`` writes the diffusers-style config-only folder (no weights) that the loader uses
to build these models from a single-file checkpoint (``src/retouch/demo/config``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LATENT_SCALE = 0.18215  # SD1's VAE factor; the trained VAE is rescaled so that it holds (see train.py)

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[32, 64, 128, 128],
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    layers_per_block=1, norm_num_groups=8, sample_size=128, scaling_factor=LATENT_SCALE, act_fn="silu",
)
UNET_CONFIG: dict[str, Any] = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=[32, 64, 128], layers_per_block=1,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    cross_attention_dim=128, attention_head_dim=2, norm_num_groups=8, use_linear_projection=False,
)
TEXT_CONFIG: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=2,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=49406,
    eos_token_id=49407, pad_token_id=49407, projection_dim=128,
)
SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "clip_sample": False, "prediction_type": "epsilon", "trained_betas": None,
}


def build_vae(**overrides: Any) -> Any:
    """The demo AutoencoderKL; ``overrides`` replace VAE_CONFIG entries (train.py's --vae-widths/--vae-groups)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{**VAE_CONFIG, **overrides})


def build_unet(**overrides: Any) -> Any:
    """The demo UNet; ``in_channels=9`` builds the inpainting variant (SD 1.5-inpainting layout)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**{**UNET_CONFIG, **overrides})


def build_text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def write_config_folder(root: Path) -> None:
    """Write model_index.json and the unet/vae/text_encoder/scheduler/tokenizer configs under ``root``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    root.mkdir(parents=True, exist_ok=True)
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    for sub, cls, cfg in (("unet", UNet2DConditionModel, UNET_CONFIG), ("vae", AutoencoderKL, VAE_CONFIG)):
        (root / sub).mkdir(exist_ok=True)
        full = {"_class_name": cls.__name__, **cfg}
        (root / sub / "config.json").write_text(json.dumps(full, indent=2) + "\n")
    (root / "text_encoder").mkdir(exist_ok=True)
    text = CLIPTextConfig(**TEXT_CONFIG).to_dict()
    text["architectures"] = ["CLIPTextModel"]
    (root / "text_encoder" / "config.json").write_text(json.dumps(text, indent=2) + "\n")
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2) + "\n")
