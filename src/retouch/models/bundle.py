"""ModelBundle: the loaded parts of one checkpoint, which the engine runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from retouch.models.families import Family


def scaled_linear_alphas_cumprod(
    beta_start: float = 0.00085, beta_end: float = 0.012, steps: int = 1000
) -> torch.Tensor:
    """SD's "scaled linear" beta schedule as cumulative alphas, float64, shape (steps,) (spec §3.4)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


@dataclass
class ModelBundle:
    """Text encoder(s), tokenizer(s), UNet and VAE of one model, with its family and identity.

    ``text_encoders``/``tokenizers`` hold one entry for SD1/SD2 and two for SDXL (CLIP ViT-L, then
    OpenCLIP bigG with projection). ``alphas_cumprod`` is the model's training noise schedule.
    ``name`` and ``hash`` are what A1111 writes as ``Model`` and ``Model hash`` (first 10 hex of the
    file's sha256); ``vae_name``/``vae_hash`` are set only for a separately loaded VAE.
    """

    family: Family
    unet: Any
    vae: Any
    text_encoders: tuple[Any, ...]
    tokenizers: tuple[Any, ...]
    alphas_cumprod: torch.Tensor = field(default_factory=scaled_linear_alphas_cumprod)
    name: str = "model"
    hash: str | None = None
    vae_name: str | None = None
    vae_hash: str | None = None
    path: str | None = None
