"""ModelBundle: the loaded parts of one checkpoint, which the engine runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from retouch.models.families import Family
from retouch.sampling.schedules import scaled_linear_alphas_cumprod

__all__ = ["ModelBundle", "scaled_linear_alphas_cumprod"]


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
    _patcher: Any = field(default=None, repr=False, compare=False)

    def network_patcher(self) -> Any:
        """The one :class:`~retouch.models.networks.patcher.NetworkPatcher` of these weights.

        Owned by the bundle, not by an engine, so that every engine built on the same loaded model
        shares it and a LoRA merged by one is restored by the next job of any other.
        """
        if self._patcher is None:
            from retouch.models.networks.patcher import NetworkPatcher

            self._patcher = NetworkPatcher(self)
        return self._patcher
