"""A DeepCache-style feature cache around a diffusers ``UNet2DConditionModel`` call (Retouch-only).

DeepCache (Ma et al., 2023) observes that a UNet's deep features change slowly between sampler steps.
With ``interval`` N and ``depth`` d, a *full* call runs the whole UNet and keeps the input of the
``d`` outermost up blocks (the output of the deep part: the down blocks past ``d``, the mid block and
the inner up blocks); the N − 1 calls after it run only ``conv_in``, the time embedding, the first
``d`` down blocks, the last ``d`` up blocks (with fresh skip connections) and the output head, on the
cached deep feature. Calls are counted per input shape (sample and text context), so a batch whose
make-up changes (NGMS skipping the uncond, cond and uncond of different lengths) keeps one cache per
shape. One :class:`FeatureCache` serves one sampling run; a new run needs a new one.

:func:`unet_pass` is the UNet's own ``forward`` sequence (diffusers 0.42), called through the model's
submodules and helper methods, never patching a class; with ``deep=None`` it equals ``unet(...)``
bit for bit (tests/test_feature_cache.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from retouch.params import ParamError

__all__ = ["FeatureCache", "unet_pass", "max_depth"]


def max_depth(unet: Any) -> int:
    """The deepest cache depth a UNet allows: one block short of all its down blocks."""
    return len(unet.down_blocks) - 1


@dataclass
class _Embedded:
    emb: Tensor
    context: Tensor
    upsample_size_needed: bool


def _embed(unet: Any, sample: Tensor, timestep: Tensor, context: Tensor, added: dict[str, Any] | None) -> _Embedded:
    """Time (and SDXL added) embedding, as ``UNet2DConditionModel.forward`` computes it."""
    if unet.config.addition_embed_type == "image_hint" or unet.class_embedding is not None:
        raise ParamError("feature_cache_interval: this UNet (class or image-hint embeddings) is not supported")
    factor = 2**unet.num_upsamplers
    t_emb = unet.get_time_embed(sample=sample, timestep=timestep)
    emb = unet.time_embedding(t_emb, None)
    aug = unet.get_aug_embed(emb=emb, encoder_hidden_states=context, added_cond_kwargs=added)
    emb = emb + aug if aug is not None else emb
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    context = unet.process_encoder_hidden_states(encoder_hidden_states=context, added_cond_kwargs=added)
    return _Embedded(emb, context, any(dim % factor != 0 for dim in sample.shape[-2:]))


def _block(block: Any, e: _Embedded, **kwargs: Any) -> Any:
    if getattr(block, "has_cross_attention", False):
        return block(temb=e.emb, encoder_hidden_states=e.context, attention_mask=None,
                     cross_attention_kwargs=None, encoder_attention_mask=None, **kwargs)
    return block(temb=e.emb, **kwargs)


def _up(
    unet: Any, blocks: range, sample: Tensor, res: tuple[Tensor, ...], e: _Embedded
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Up blocks ``blocks`` on ``sample``, taking skip connections from the end of ``res``; the rest of ``res``."""
    upsample_size = None
    last = len(unet.up_blocks) - 1
    for i in blocks:
        block = unet.up_blocks[i]
        skips, res = res[-len(block.resnets):], res[: -len(block.resnets)]
        if i != last and e.upsample_size_needed:
            upsample_size = res[-1].shape[2:]
        sample = _block(block, e, hidden_states=sample, res_hidden_states_tuple=skips, upsample_size=upsample_size)
    return sample, res


def unet_pass(
    unet: Any, sample: Tensor, timestep: Tensor, context: Tensor, added: dict[str, Any] | None = None,
    *, depth: int = 1, deep: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(UNet output, deep feature at ``depth``); given ``deep``, only the shallow blocks run on it."""
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0
    e = _embed(unet, sample, timestep, context, added)
    n_up = len(unet.up_blocks)
    h = unet.conv_in(sample)
    res: tuple[Tensor, ...] = (h,)
    for block in unet.down_blocks[: depth if deep is not None else None]:
        h, more = _block(block, e, hidden_states=h)
        res += more
    if deep is None:  # the deep part: mid block and the inner up blocks, on the innermost skips
        h = _block(unet.mid_block, e, hidden_states=h) if unet.mid_block is not None else h
        deep, res = _up(unet, range(n_up - depth), h, res, e)
    else:  # the outer up blocks take the outermost skips; the last down block's downsample is unused
        res = res[: sum(len(b.resnets) for b in unet.up_blocks[n_up - depth:])]
    out, _ = _up(unet, range(n_up - depth, n_up), deep, res, e)
    if unet.conv_norm_out is not None:
        out = unet.conv_act(unet.conv_norm_out(out))
    return unet.conv_out(out), deep


class FeatureCache:
    """Full UNet every ``interval`` calls per input shape, shallow calls on the cached deep feature between."""

    def __init__(self, unet: Any, interval: int, depth: int) -> None:
        if interval < 2:
            raise ParamError(f"feature_cache_interval must be 0 (off) or >= 2 to cache; got {interval}")
        if not 1 <= depth <= max_depth(unet):
            raise ParamError(f"feature_cache_depth must be in [1, {max_depth(unet)}] for this model; got {depth}")
        self.unet = unet
        self.interval = interval
        self.depth = depth
        self._deep: dict[tuple[Any, ...], Tensor] = {}
        self._calls: dict[tuple[Any, ...], int] = {}
        self.full_calls = 0
        self.cached_calls = 0

    def __call__(self, sample: Tensor, timestep: Tensor, context: Tensor, added: dict[str, Any] | None = None) -> Tensor:
        key = (tuple(sample.shape), tuple(context.shape))
        k = self._calls.get(key, 0)
        self._calls[key] = k + 1
        deep = self._deep.get(key) if k % self.interval else None
        out, self._deep[key] = unet_pass(self.unet, sample, timestep, context, added, depth=self.depth, deep=deep)
        if deep is None:
            self.full_calls += 1
        else:
            self.cached_calls += 1
        return out
