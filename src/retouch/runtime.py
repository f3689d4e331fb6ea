"""Tensor plumbing for the engine: device and precision policy, UNet calls, VAE, text-encoding cache.

Kept apart from ``engine.py`` so the recipe there reads as steps, and so the policy (what runs in
which dtype, when to fall back) sits in one place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from retouch.feature_cache import FeatureCache
from retouch.lru import LRU, array_key
from retouch.memory import choose_tile, parse_memory, read_mem_available, resident_bytes, vae_bytes_per_pixel
from retouch.models.bundle import ModelBundle
from retouch.models.text import EmbeddingSource, EncodedTexts, TextConditioning, encode_texts
from retouch.ov_backend import OpenVINOBackend, check_backend
from retouch.params import ParamError
from retouch.sampling.denoisers import Cond
from retouch.sampling.schedules import model_sigmas
from retouch.vae_tiles import decoder_pad, encoder_pad, supports_tiling, tile_grid, tiled_decode, tiled_encode

__all__ = ["Runtime", "choose_device", "choose_dtype", "set_threads", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_TEXT_CACHE_SIZE = 32
VAE_CACHE_SIZE = 16  # posteriors of 512x512 inputs: 2 x 64 KiB each


def choose_device(device: str | torch.device | None) -> torch.device:
    """The requested device, or CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ParamError(f"unknown device {device!r} (use cpu, cuda, cuda:N or mps): {e}") from None


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads for this process (``None``: leave torch's default, one per core).

    A process-wide setting, so it belongs to the program's edge (the CLI's and the server's ``--threads``),
    not to an Engine. On a machine that other jobs share, fewer threads than cores is often much faster:
    OpenMP threads that wait for a busy core spin (bench/README.md, "Threads"). Returns the count in effect.
    """
    if threads is None:
        return torch.get_num_threads()
    cores = os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cores:
        raise ParamError(f"threads must be a whole number from 1 to {cores} (this machine's CPUs); got {threads!r}")
    torch.set_num_threads(threads)
    return threads


def cpu_has_native_bf16() -> bool:
    """oneDNN computes bf16 natively on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_dtype(precision: str, device: torch.device) -> torch.dtype:
    """Resolve ``precision`` ("auto", "fp32", "bf16", "fp16") for ``device``.

    auto: CPU -> bf16 where oneDNN reports native bf16 (AVX-512 BF16 / AMX), else fp32; CUDA -> fp16;
    other devices -> fp32. fp16 on a CPU is refused: it has no fast path there (0.9 GFLOP/s measured).
    """
    if precision not in PRECISIONS:
        raise ParamError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise ParamError("precision fp16 is for GPUs; on the CPU use auto, bf16 or fp32")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _openvino(
    model: ModelBundle, backend: str, device: torch.device, dtype: torch.dtype, compile: bool,
    cache_dir: str | os.PathLike[str] | None,
) -> OpenVINOBackend | None:
    """The OpenVINO backend for ``backend="openvino"`` (CPU, fp32 or bf16, without ``compile``), else None."""
    if backend == "torch":
        return None
    if device.type != "cpu":
        raise ParamError(f"backend openvino runs on the CPU; got device {device} (use device cpu, or backend torch)")
    if compile:
        raise ParamError("compile (torch.compile) needs backend torch; backend openvino compiles its own graph")
    return OpenVINOBackend(model, dtype, cache_dir=cache_dir)


def _place(module: Any, device: torch.device, dtype: torch.dtype) -> None:
    """Move ``module`` to ``device`` and cast it to ``dtype`` only when it differs, in eval mode.

    The cast goes through ``torch.nn.Module.to``: diffusers 0.42's ``ModelMixin.to`` warns about
    "modules that should be kept in float32" on every dtype cast even when that list is empty.
    """
    module.to(device).eval()
    if next(module.parameters()).dtype != dtype:
        torch.nn.Module.to(module, dtype=dtype)


def signed_pixels(image: Image.Image) -> np.ndarray:
    """RGB pixels mapped from [0, 255] to [-1, 1], HWC float32 (A1111's ``image * 2 - 1``)."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0


@dataclass(frozen=True)
class Posterior:
    """The VAE encoder's diagonal Gaussian for one input, (1, 4, h, w) float32 each, before any sampling."""

    mean: Tensor
    std: Tensor


class Runtime:
    """Owns the bundle's modules on one device and dtype; encodes text, runs the UNet and the VAE.

    ``vae_cache_size``: how many VAE posteriors to keep, keyed by the exact VAE input (``0``: off).
    ``max_memory``: the process's memory budget in bytes or as text ("6G", ``retouch.memory.parse_memory``);
    a VAE encode or decode whose estimated activations do not fit what is left of it (``None``: what the
    machine has free now, MemAvailable) runs tiled (``retouch.vae_tiles``); ``vae_tiles`` counts the tiles
    run so far per kind.
    ``backend``: "torch", or "openvino" (CPU): the UNet and VAE calls go to an
    :class:`~retouch.ov_backend.OpenVINOBackend` (cache folder ``ov_cache_dir``), the torch UNet stays in
    fp32 for LoRA merging and the VAE's NaN fallback runs the torch VAE.
    """

    def __init__(
        self, model: ModelBundle, device: str | torch.device | None, precision: str, *,
        channels_last: bool = True, compile: bool = False, vae_cache_size: int = VAE_CACHE_SIZE,
        max_memory: int | str | None = None,
        backend: str = "torch", ov_cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.max_memory = None if max_memory is None else parse_memory(max_memory)
        self.vae_tiles = {"encode": 0, "decode": 0}
        self.model = model
        self.backend = check_backend(backend)
        self.device = choose_device(device)
        self.dtype = choose_dtype(precision, self.device)
        self.ov = _openvino(model, backend, self.device, self.dtype, compile, ov_cache_dir)
        for module in model.text_encoders:
            _place(module, self.device, self.dtype)
        _place(model.unet, self.device, self.dtype if self.ov is None else torch.float32)  # OpenVINO converts fp32
        _place(model.vae, self.device, torch.float32)
        # oneDNN's convolutions prefer NHWC: one SD1.5 UNet call in fp32 on one thread of this 2-core AVX2
        # host took 14.4 s instead of 17.3 s at a 16x16 latent (a single loaded-machine run; the bench's
        # profile at 512x512 saw no reliable difference, bench/README.md). Outputs are the same.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model.unet.to(memory_format=self.memory_format)
        model.vae.to(memory_format=self.memory_format)
        self._unet: Any = torch.compile(model.unet) if compile else model.unet
        self.compile_warmup_s: float | None = None
        self.model_sigmas = model_sigmas(model.alphas_cumprod).to(torch.float32)
        self._text_cache: LRU[EncodedTexts] = LRU(_TEXT_CACHE_SIZE)
        self.vae_cache: LRU[Posterior] = LRU(vae_cache_size)
        self._notices: list[str] = []

    # -- text -------------------------------------------------------------------------------------

    def encode_texts(
        self, texts: Sequence[str], *, clip_skip: int, emphasis: str, embeddings: EmbeddingSource | None = None,
        cache_key: Any = None,
    ) -> EncodedTexts:
        """Encode ``texts`` together (one emphasis batch, spec a1111-prompts.md §1.8), cached.

        ``cache_key`` must change whenever the text encoders' weights or the embeddings change (the
        engine passes the active LoRA set and the embedding library's version).
        """
        key = (tuple(texts), clip_skip, emphasis, cache_key)
        encoded = self._text_cache.get(key)
        if encoded is None:
            encoded = encode_texts(
                self.model.text_encoders, self.model.tokenizers, texts, base=self.model.family.base,
                clip_skip=clip_skip, emphasis=emphasis, embeddings=embeddings,
            )
            self._text_cache.put(key, encoded)
        return encoded

    def text_cond(self, tc: TextConditioning, row: int, batch: int, width: int, height: int, *, zero: bool = False) -> Cond:
        """Conditioning for ``batch`` copies of row ``row`` of ``tc``.

        SDXL adds the pooled embedding and time ids (original size, crop (0, 0), target size), which
        A1111 sets to the processing size. ``zero`` zeroes the text parts but keeps the time ids (SDXL's
        all-empty negative prompt, spec a1111-prompts.md §2.5).
        """
        context = tc.context[row : row + 1]
        context = torch.zeros_like(context) if zero else context
        if tc.pooled is None:
            return Cond(context.expand(batch, -1, -1))
        pooled = tc.pooled[row : row + 1]
        pooled = torch.zeros_like(pooled) if zero else pooled
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32, device=self.device)
        return Cond(context.expand(batch, -1, -1), pooled.expand(batch, -1), time_ids.expand(batch, -1))

    # -- UNet -------------------------------------------------------------------------------------

    def unet_fn(self, x_in: Tensor, t: Tensor, cond: Cond, cache: FeatureCache | None = None) -> Tensor:
        """Raw UNet output for scaled input ``x_in`` at fractional timesteps ``t``.

        ``cache`` (a :class:`~retouch.feature_cache.FeatureCache` on this runtime's UNet) runs the call
        through the feature cache, on the eager UNet.
        """
        if cond.concat is not None:
            x_in = torch.cat([x_in, cond.concat.to(x_in.dtype)], dim=1)
        if self.ov is not None:
            return self._ov_unet(x_in, t.to(torch.float32), cond, cache)
        added: dict[str, Tensor] | None = None
        if cond.pooled is not None:
            added = {"text_embeds": cond.pooled.to(self.dtype), "time_ids": cond.time_ids.to(self.dtype)}  # type: ignore[union-attr]
        x_in = x_in.to(self.dtype).contiguous(memory_format=self.memory_format)
        context = cond.context.to(self.dtype)
        t = t.to(torch.float32)
        if cache is not None:
            return cache(x_in, t, context, added).float()
        kwargs: dict[str, Any] = {} if added is None else {"added_cond_kwargs": added}
        if self._unet is not self.model.unet and self.compile_warmup_s is None:
            start = time.perf_counter()  # the first compiled call compiles: report it apart from steps
            out = self._unet(x_in, t, encoder_hidden_states=context, **kwargs).sample
            self.compile_warmup_s = time.perf_counter() - start
            return out.float()
        return self._unet(x_in, t, encoder_hidden_states=context, **kwargs).sample.float()

    def _ov_unet(self, x_in: Tensor, t: Tensor, cond: Cond, cache: FeatureCache | None) -> Tensor:
        """The UNet call on the OpenVINO backend: float32 inputs; the inference precision is the backend's."""
        if cache is not None:
            raise ParamError("feature_cache_interval: the feature cache runs the torch UNet block by block; "
                             "it needs backend torch (got backend openvino)")
        assert self.ov is not None
        added = None
        if cond.pooled is not None:
            added = {"text_embeds": cond.pooled.float(), "time_ids": cond.time_ids.float()}  # type: ignore[union-attr]
        return self.ov.unet(x_in.float(), t, cond.context.float(), added).to(self.device)

    # -- VAE --------------------------------------------------------------------------------------

    def _autocast(self, enabled: bool) -> Any:
        if not enabled or self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def encode_arrays(
        self, arrays: Sequence[np.ndarray], seeds: Sequence[int], *, sample: bool = True, scale: bool = True
    ) -> Tensor:
        """VAE-encode HWC float arrays in [-1, 1], one at a time (spec §2.11).

        ``sample``: posterior sample (A1111) drawn from a CPU generator seeded with the slot's seed (the
        global RNG is never used), else the posterior mode. ``scale``: multiply by the latent scale.
        """
        latents = []
        for array, seed in zip(arrays, seeds, strict=True):
            posterior = self._posterior(array)
            mean, std = posterior.mean, posterior.std
            z = mean  # never returned itself: torch.cat below copies, so the cached tensors stay untouched
            if sample:
                gen = torch.Generator("cpu").manual_seed(int(seed))
                z = mean + std * torch.randn(mean.shape, generator=gen).to(self.device)
            latents.append(z * self.model.family.latent_scale if scale else z)
        return torch.cat(latents)

    def _posterior(self, array: np.ndarray) -> Posterior:
        """The VAE posterior of one HWC array, from ``vae_cache`` when these exact bytes were encoded before.

        The key is the VAE's input itself (shape, dtype, digest of the bytes), so every job field that
        changes the pixels (size, resize mode, crop, fill, mask, inpainting weight) changes it; the
        model's and VAE's hashes, device and dtype complete it. The posterior sample is drawn after
        the lookup, so seeds share an entry and a hit is byte-identical to a fresh encode.
        """
        core = self._vae_tile("encode", (array.shape[0], array.shape[1]))
        key = (array_key(array), self.model.hash, self.model.vae_hash, str(self.device), str(self.dtype), core)
        cached = self.vae_cache.get(key)
        if cached is not None:
            return cached
        x = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].to(self.device)
        if self.ov is not None:
            mean, std = self.ov.vae_encode(x)
            posterior = Posterior(mean.to(self.device), std.to(self.device))
        else:
            with self._autocast(True):
                if core is None:
                    dist = self.model.vae.encode(x).latent_dist
                else:
                    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

                    dist = DiagonalGaussianDistribution(tiled_encode(self.model.vae, x, core))
            posterior = Posterior(dist.mean.float(), dist.std.float())
        self.vae_cache.put(key, posterior)
        return posterior

    def encode(self, images: Sequence[Image.Image], seeds: Sequence[int], *, sample: bool = True,
               scale: bool = True) -> Tensor:
        """VAE-encode RGB images (each mapped from [0, 255] to [-1, 1])."""
        arrays = [signed_pixels(im) for im in images]
        return self.encode_arrays(arrays, seeds, sample=sample, scale=scale)

    def _decode_one(self, z: Tensor, autocast: bool) -> Tensor:
        """``autocast=False``: the torch VAE in fp32 (also on the OpenVINO backend: the NaN fallback)."""
        if self.ov is not None and autocast:
            return self.ov.vae_decode(z / self.model.family.latent_scale).to(self.device)
        core = self._vae_tile("decode", (z.shape[-2], z.shape[-1]))
        with self._autocast(autocast):
            if core is None:
                return self.model.vae.decode(z / self.model.family.latent_scale).sample.float()
            return tiled_decode(self.model.vae, z / self.model.family.latent_scale, core).float()

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent cell along a side (8 for SD's VAE)."""
        return 2 ** (len(self.model.vae.config["block_out_channels"]) - 1)

    def _vae_allowance(self) -> int | None:
        """Bytes a VAE call may add now: ``max_memory`` minus the resident set, or MemAvailable; None: unknown."""
        if self.max_memory is None:
            return read_mem_available()
        return self.max_memory - (resident_bytes() or 0)

    def _vae_tile(self, kind: str, size: tuple[int, int]) -> int | None:
        """The latent tile core for a ``kind`` call ("encode": ``size`` in pixels, "decode": in latent cells)."""
        vae = self.model.vae
        if not supports_tiling(vae):
            return None
        allowance = self._vae_allowance()
        if allowance is None:
            return None
        f = self.vae_scale_factor
        h, w = (size[0] // f, size[1] // f) if kind == "encode" else size
        pad = encoder_pad(vae.config) if kind == "encode" else decoder_pad(vae.config)
        core = choose_tile((h, w), pad, vae_bytes_per_pixel(vae.config) * f * f, allowance)
        if core is not None:
            grid = tile_grid(h, w, core, pad)
            self.vae_tiles[kind] += len(grid.cores)
            note = f"VAE {kind} tiled ({len(grid.cores)} tiles of {core * f} px) to fit the memory budget."
            if note not in self._notices:
                self._notices.append(note)
        return core

    @torch.inference_mode()
    def decode(self, latents: Tensor) -> list[Image.Image]:
        """Decode each latent separately; NaN/inf in reduced precision -> redo in fp32 (spec §8.19).

        Pixels map [-1, 1] -> [0, 1] with clamping and become uint8 by truncation, as A1111 does.
        """
        images = []
        for z in latents.float():
            x = self._decode_one(z[None], autocast=True)
            if not torch.isfinite(x).all() and self.dtype != torch.float32:
                self._notices.append("VAE decode produced NaN/inf in reduced precision; redone in fp32.")
                x = self._decode_one(z[None], autocast=False)
            x = torch.clamp((x[0] + 1.0) / 2.0, 0.0, 1.0)
            array = (255.0 * x.permute(1, 2, 0).cpu().numpy()).astype(np.uint8)
            images.append(Image.fromarray(array))
        return images

    def drain_notices(self) -> list[str]:
        out, self._notices = self._notices, []
        return out
