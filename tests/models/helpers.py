"""Helpers shared by the model tests: fixed-input outputs of UNets, VAEs and text encoders."""

from __future__ import annotations

import torch

from retouch.models.bundle import ModelBundle
from retouch.models.families import FAMILIES
from retouch.models.loading import bundled_configs

ALL_FAMILIES = list(FAMILIES)


def sdxl_added_cond(batch: int, unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Seeded pooled-text and time-id inputs for an SDXL UNet's ``added_cond_kwargs``."""
    gen = torch.Generator().manual_seed(3)
    time_dim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    return {
        "text_embeds": torch.randn(batch, time_dim, generator=gen),
        "time_ids": torch.randn(batch, 6, generator=gen) * 100,
    }


@torch.no_grad()
def unet_output(unet: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    """The UNet's output on a fixed seeded input (B=1, 8x8 latent, 5 context tokens, t=500)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, unet.config.in_channels, 8, 8, generator=gen)
    context = torch.randn(1, 5, unet.config.cross_attention_dim, generator=gen)
    kwargs = {}
    if unet.config.addition_embed_type == "text_time":
        kwargs["added_cond_kwargs"] = sdxl_added_cond(1, unet)
    dtype = next(unet.parameters()).dtype
    return unet(x.to(dtype), torch.tensor([500]), encoder_hidden_states=context.to(dtype), **kwargs).sample


@torch.no_grad()
def vae_outputs(vae: torch.nn.Module, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(posterior mean of a fixed 32x32 image, decode of a fixed 4x4 latent)."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    latent = torch.randn(1, 4, 4, 4, generator=gen)
    return vae.encode(image).latent_dist.mean, vae.decode(latent).sample


@torch.no_grad()
def text_outputs(encoder: torch.nn.Module, tokenizer: object, prompt: str = "a photo of a cat") -> list[torch.Tensor]:
    """Last hidden state, penultimate hidden state, and pooled/projected output for ``prompt``."""
    ids = tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids  # type: ignore[operator]
    out = encoder(ids, output_hidden_states=True)
    pooled = out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output
    return [out.last_hidden_state, out.hidden_states[-2], pooled]


def meta_bundle(family_name: str) -> ModelBundle:
    """A full-size model of the family built from the bundled configs with meta (shape-only) tensors."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    family = FAMILIES[family_name]
    configs = bundled_configs(family)
    encoders = []
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        for i, key in enumerate(("text_encoder", "text_encoder_2")[: 2 if family.is_sdxl else 1]):
            cfg = CLIPTextConfig(**{k: v for k, v in configs[key].items() if k not in ("architectures", "model_type")})
            encoders.append((CLIPTextModelWithProjection if i else CLIPTextModel)(cfg))
    return ModelBundle(family, unet, vae, tuple(encoders), ())
