"""Model configurations for the benchmark, written in code (no hub), and seeded component builders.

``SD15_*`` are Stable Diffusion 1.5's published diffusers configs (UNet 320/640/1280/1280 with 768-wide
cross-attention, CLIP ViT-L/14 text encoder with 12 layers, VAE 128/256/512/512). ``components`` builds
them with random weights under a fixed seed, so every benchmark process that asks for the same
(size, family, seed) holds bit-identical weights; ``fingerprint`` checks that cheaply.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

SD15_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)

SD15_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    norm_num_groups=32,
    act_fn="silu",
    sample_size=512,
    scaling_factor=0.18215,
)

SD15_TEXT: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=1,
)

#: diffusers' Euler scheduler as SD1.5 ships it (scaled-linear betas, "leading" spacing, offset 1).
SD15_EULER: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    interpolation_type="linear",
    timestep_spacing="leading",
    steps_offset=1,
    use_karras_sigmas=False,
)


def components(size: str, inpaint: bool, seed: int = 0) -> dict[str, Any]:
    """Seeded UNet, VAE, text encoder and tokenizer: ``size`` "sd15" (full) or "tiny" (retouch.testing).

    ``inpaint`` gives the 9-channel inpainting UNet. The global RNG is restored afterwards.
    """
    from retouch.models.families import SD1, SD1_INPAINT
    from retouch.models.tokenizers import clip_tokenizer

    if size == "tiny":
        from retouch.testing import tiny_components

        parts: dict[str, Any] = tiny_components(SD1_INPAINT if inpaint else SD1, seed)
        return {
            "unet": parts["unet"],
            "vae": parts["vae"],
            "text_encoder": parts["text_encoders"][0],
            "tokenizer": parts["tokenizers"][0],
        }
    if size != "sd15":
        raise ValueError(f"size must be 'sd15' or 'tiny'; got {size!r}")
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_TEXT)).eval()
        unet = UNet2DConditionModel(**{**SD15_UNET, "in_channels": 9 if inpaint else 4}).eval()
        vae = AutoencoderKL(**SD15_VAE).eval()
    finally:
        torch.random.set_rng_state(state)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip_tokenizer()}


def bundle(parts: dict[str, Any], *, inpaint: bool = False, name: str = "bench") -> Any:
    """A Retouch ModelBundle over ``components(...)``'s modules (SD1 or SD1-inpaint family)."""
    from retouch.models.bundle import ModelBundle
    from retouch.models.families import SD1, SD1_INPAINT

    return ModelBundle(
        family=SD1_INPAINT if inpaint else SD1, unet=parts["unet"], vae=parts["vae"],
        text_encoders=(parts["text_encoder"],), tokenizers=(parts["tokenizer"],), name=name, hash=None,
    )


def fingerprint(*modules: torch.nn.Module) -> str:
    """A short hash of every parameter's name, shape and a strided sample of its values (fp32 bytes)."""
    h = hashlib.sha256()
    for module in modules:
        for name, p in module.state_dict().items():
            flat = p.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 257)].to(torch.float32).contiguous()
            h.update(f"{name}{tuple(p.shape)}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]
