"""Tiny random Stable-Diffusion-architecture models built in code, for tests and smoke runs.

The parts are the real diffusers/transformers classes at toy widths: the 8x VAE factor and 4 latent
channels are kept, so every code path of the engine runs exactly as on a full-size model, in a
fraction of a second. Weights are random (seeded), so outputs are meaningless but reproducible.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import torch

from retouch.models.bundle import ModelBundle
from retouch.models.families import Family, family_by_name
from retouch.models.tokenizers import clip_tokenizer

__all__ = ["tiny_model", "tiny_components", "ConstantX0UNet", "with_unet"]


def tiny_components(family: Family, seed: int = 0) -> dict[str, object]:
    """Seeded tiny UNet, VAE, text encoder(s) and tokenizer(s) for ``family`` (diffusers classes)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        text_cfg = dict(
            bos_token_id=49406, eos_token_id=49407, pad_token_id=1, hidden_size=32, intermediate_size=37,
            layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
            max_position_embeddings=77, hidden_act="gelu" if family.base != "sd1" else "quick_gelu",
        )
        encoders: list[object] = [CLIPTextModel(CLIPTextConfig(**text_cfg)).eval()]
        tokenizers = [clip_tokenizer("!" if family.base == "sd2" else "<|endoftext|>")]
        unet_kw: dict[str, object] = {}
        cross_dim = 32
        if family.is_sdxl:
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg, projection_dim=32)).eval())
            tokenizers.append(clip_tokenizer("!"))
            cross_dim = 64
            unet_kw = dict(
                addition_embed_type="text_time", addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=32 + 6 * 8, transformer_layers_per_block=(1, 1),
            )
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=family.unet_in_channels, out_channels=4,
            block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=cross_dim, attention_head_dim=(2, 4) if family.base != "sd1" else 8,
            use_linear_projection=family.base != "sd1", **unet_kw,
        ).eval()
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1, norm_num_groups=8, sample_size=32,
            scaling_factor=family.latent_scale,
        ).eval()
    finally:
        torch.random.set_rng_state(gen_state)
    return {"unet": unet, "vae": vae, "text_encoders": tuple(encoders), "tokenizers": tuple(tokenizers)}


def tiny_model(seed: int = 0, family: str | Family = "sd1") -> ModelBundle:
    """A tiny random model of ``family`` ("sd1", "sd1-inpaint", "pix2pix", "sd2", "sd2-v", "sdxl", ...).

    Built in code in well under a second; identical weights for the same ``seed``.
    """
    fam = family if isinstance(family, Family) else family_by_name(family)
    parts = tiny_components(fam, seed)
    return ModelBundle(
        family=fam, unet=parts["unet"], vae=parts["vae"], text_encoders=parts["text_encoders"],  # type: ignore[arg-type]
        tokenizers=parts["tokenizers"], name=f"tiny-{fam.name}-{seed}",  # type: ignore[arg-type]
        hash=f"{seed:010x}"[-10:],
    )


class ConstantX0UNet(torch.nn.Module):
    """An analytic eps-UNet whose every x0 estimate is ``target`` (spec soft-masks.md §5.5).

    From its inputs it recovers ``sigma`` (log-sigma interpolation of the model table at the fractional
    timestep) and ``x = x_in / c_in``, and returns ``eps = (x - target) / sigma``, so
    ``ModelDenoiser`` gives ``x - sigma * eps = target``. ``target``: (1 or B, 4, h, w). Outputs are
    pixel-local and independent of the prompt, so mask maths can be checked exactly.
    """

    def __init__(self, target: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.target = torch.nn.Parameter(target.float(), requires_grad=False)  # a parameter: engines cast it
        log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log().float()
        self.log_sigmas = torch.nn.Parameter(log_sigmas, requires_grad=False)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, **_: Any) -> SimpleNamespace:
        t = timestep.float().reshape(-1)
        lo = t.floor().long().clamp(0, len(self.log_sigmas) - 1)
        hi = (lo + 1).clamp(max=len(self.log_sigmas) - 1)
        w = t - lo
        sigma = ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]).exp().reshape(-1, 1, 1, 1)
        x = sample[:, :4].float() * (sigma**2 + 1) ** 0.5
        return SimpleNamespace(sample=(x - self.target) / sigma)


def with_unet(bundle: ModelBundle, unet: torch.nn.Module) -> ModelBundle:
    """A copy of ``bundle`` running ``unet`` (text encoders and VAE shared)."""
    return dataclasses.replace(bundle, unet=unet, name=f"{bundle.name}-fake")
