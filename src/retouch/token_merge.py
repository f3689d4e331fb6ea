"""Token merging (ToMe for Stable Diffusion) as A1111 applies it: self-attention only, full resolution only.

A1111 v1.10 calls tomesd 0.1.3 with ``ratio=r, use_rand=False, merge_attn=True, merge_crossattn=False,
merge_mlp=False`` and tomesd's ``max_downsample=1, sx=sy=2``. Per transformer block call, with the
block input ``x`` (B, N, C) and the UNet's latent size (H, W):

* ``downsample = ceil(sqrt((H*W) // N))``; only blocks with ``downsample <= 1`` merge, on the token
  grid ``h = ceil(H / downsample)``, ``w = ceil(W / downsample)``, removing ``r = int(N * ratio)`` tokens.
* Partition (no randomness): the grid is cut into 2x2 cells (``h // 2`` by ``w // 2`` of them); each
  cell's top-left token is a *dst* token, every other token (the other three, and the last row or
  column of an odd grid) is *src*. The order is the one ``argsort(dim=1)`` (not stable) gives on the
  (1, h*w, 1) int64 buffer of -1 (dst) and 0 (src), row-major: dst first, then src, but within each
  part grid order only up to 16 tokens on torch 2.13 CPU and scrambled beyond (measured; a 5x5 grid's
  src start 24, 23, 22, ...). The order only moves ties and float summation order, and the same call
  is made here, so every device and torch build orders as tomesd does on it.
* Matching: cosine similarity of each src token to each dst token; each src keeps its best dst; the
  ``min(r, #src)`` src tokens with the highest best score are merged into their dst (a mean over the
  dst and all src merged into it), the others are kept.
* ``merge`` gives ``[kept src..., dst...]`` (B, N - r, C) to the block's self-attention (attn1) in place of
  its normalised input; ``unmerge`` spreads attn1's output back to N tokens: every dst and kept src token
  reads its own row, every merged src reads its dst's row. Cross-attention and the feed-forward see all tokens.

:func:`token_merging` applies this to a diffusers UNet for one sampling run with PyTorch module hooks
(a pre-hook on ``conv_in`` records (H, W), a pre-hook on each ``BasicTransformerBlock`` plans the merge
from its input, a pre-hook and a forward hook on its ``attn1`` merge and unmerge), removed on exit. It
calls nothing itself, so the plain UNet call and the feature cache (which calls the blocks) both merge.
Ratio 0 registers nothing: the exact path is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["MergePlan", "TokenMerging", "grid_size", "partition", "plan_merge", "merge", "unmerge", "token_merging"]

#: tomesd's defaults, which A1111 keeps: merge only at full resolution, 2x2 cells.
MAX_DOWNSAMPLE = 1
STRIDE = 2


def grid_size(latent_hw: tuple[int, int], tokens: int, max_downsample: int = MAX_DOWNSAMPLE) -> tuple[int, int] | None:
    """The token grid (h, w) a block of ``tokens`` tokens merges on, or None when it is too downsampled."""
    height, width = latent_hw
    downsample = math.ceil(math.sqrt((height * width) // tokens))
    if downsample > max_downsample:
        return None
    return math.ceil(height / downsample), math.ceil(width / downsample)


def partition(h: int, w: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(src positions, dst positions) of an h x w grid, each (1, n, 1) int64, in tomesd's order."""
    cells_h, cells_w = h // STRIDE, w // STRIDE
    marks = torch.zeros(h, w, dtype=torch.int64, device=device)
    marks[: cells_h * STRIDE : STRIDE, : cells_w * STRIDE : STRIDE] = -1  # each cell's top-left token
    order = marks.reshape(1, -1, 1).argsort(dim=1)  # the call tomesd makes: dst first, then src
    n_dst = cells_h * cells_w
    return order[:, n_dst:], order[:, :n_dst]


@dataclass(frozen=True)
class MergePlan:
    """Which tokens merge where, for one block call (batch B, N tokens, r of them removed)."""

    src: Tensor  #: (1, Ns, 1) grid positions of the src tokens
    dst: Tensor  #: (1, Nd, 1) grid positions of the dst tokens
    kept: Tensor  #: (B, Ns - r, 1) indices into src of the src tokens kept
    merged: Tensor  #: (B, r, 1) indices into src of the src tokens merged
    into: Tensor  #: (B, r, 1) index into dst that each merged src token joins
    tokens: int  #: N

    @property
    def removed(self) -> int:
        return int(self.merged.shape[1])


def plan_merge(metric: Tensor, h: int, w: int, r: int) -> MergePlan | None:
    """Bipartite soft matching of ``metric`` (B, N = h*w, C) removing ``r`` tokens; None when r <= 0."""
    if r <= 0:
        return None
    batch, tokens, channels = metric.shape
    src, dst = partition(h, w, metric.device)
    with torch.no_grad():
        unit = metric / metric.norm(dim=-1, keepdim=True)
        a = unit.gather(1, src.expand(batch, -1, channels))
        b = unit.gather(1, dst.expand(batch, -1, channels))
        scores = a @ b.transpose(-1, -2)  # (B, Ns, Nd) cosine similarities
        r = min(a.shape[1], r)
        best, best_dst = scores.max(dim=-1)
        ranked = best.argsort(dim=-1, descending=True)[..., None]
        merged = ranked[:, :r]
        into = best_dst[..., None].gather(1, merged)
    return MergePlan(src, dst, ranked[:, r:], merged, into, tokens)


def merge(x: Tensor, plan: MergePlan) -> Tensor:
    """(B, N, C) -> (B, N - r, C): the kept src tokens, then each dst averaged with the src merged into it."""
    batch, _, channels = x.shape
    src = x.gather(1, plan.src.expand(batch, -1, channels))
    dst = x.gather(1, plan.dst.expand(batch, -1, channels))
    kept = src.gather(1, plan.kept.expand(-1, -1, channels))
    moved = src.gather(1, plan.merged.expand(-1, -1, channels))
    dst = dst.scatter_reduce(1, plan.into.expand(-1, -1, channels), moved, reduce="mean")
    return torch.cat([kept, dst], dim=1)


def unmerge(y: Tensor, plan: MergePlan) -> Tensor:
    """(B, N - r, C) -> (B, N, C): each token reads its row of ``y``; a merged src token reads its dst's row."""
    batch, _, channels = y.shape
    n_kept = plan.kept.shape[1]
    rows = torch.empty(batch, plan.tokens, dtype=torch.int64, device=y.device)
    src = plan.src[..., 0].expand(batch, -1)
    dst = plan.dst[..., 0].expand(batch, -1)
    rows.scatter_(1, dst, torch.arange(dst.shape[1], device=y.device).expand(batch, -1) + n_kept)
    rows.scatter_(1, src.gather(1, plan.kept[..., 0]), torch.arange(n_kept, device=y.device).expand(batch, -1))
    rows.scatter_(1, src.gather(1, plan.merged[..., 0]), plan.into[..., 0] + n_kept)
    return y.gather(1, rows[..., None].expand(-1, -1, channels))


@dataclass
class TokenMerging:
    """One sampling run's merging state: the latent size seen, the plan per block, and counts."""

    ratio: float
    latent_hw: tuple[int, int] | None = None
    merged_calls: int = 0  #: block calls that merged
    plain_calls: int = 0  #: block calls left alone (downsampled blocks)
    _plans: dict[int, MergePlan | None] = field(default_factory=dict)

    def plan(self, x: Tensor) -> MergePlan | None:
        """The plan for a block whose input is ``x`` (B, N, C), by A1111's rule (module docstring)."""
        if self.latent_hw is None:
            raise RuntimeError("token merging: a transformer block ran before the UNet's conv_in")
        tokens = x.shape[1]
        hw = grid_size(self.latent_hw, tokens)
        found = None
        if hw is not None and hw[0] * hw[1] == tokens:  # always so in a UNet; tomesd would fail otherwise
            found = plan_merge(x, hw[0], hw[1], int(tokens * self.ratio))
        if found is None:
            self.plain_calls += 1
        else:
            self.merged_calls += 1
        return found


def _first(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Tensor:
    return args[0] if args else kwargs[name]  # type: ignore[no-any-return]


@contextmanager
def token_merging(unet: Any, ratio: float) -> Iterator[TokenMerging | None]:
    """Merge tokens in ``unet``'s full-resolution self-attention inside the ``with`` block; None for ratio 0.

    ``unet``: a diffusers ``UNet2DConditionModel`` (its ``conv_in`` and ``BasicTransformerBlock`` s).
    Yields the run's :class:`TokenMerging` (its counts), or None when ``ratio`` is 0 (no hooks at all)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"token_merging_ratio must be in [0, 1); got {ratio}")
    if ratio == 0.0:
        yield None
        return
    from diffusers.models.attention import BasicTransformerBlock

    state = TokenMerging(ratio)
    handles: list[Any] = []

    def on_conv_in(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = _first(args, kwargs, "input")
        state.latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))

    def watch(key: int, block: Any) -> None:
        def on_block(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            state._plans[key] = state.plan(_first(args, kwargs, "hidden_states"))

        def on_attn_in(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            plan = state._plans.get(key)
            if plan is None:
                return None
            if args:
                return (merge(args[0], plan), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": merge(kwargs["hidden_states"], plan)}

        def on_attn_out(_module: Any, _args: Any, _kwargs: Any, output: Tensor) -> Tensor | None:
            plan = state._plans.get(key)
            return None if plan is None else unmerge(output, plan)

        handles.append(block.register_forward_pre_hook(on_block, with_kwargs=True))
        handles.append(block.attn1.register_forward_pre_hook(on_attn_in, with_kwargs=True))
        handles.append(block.attn1.register_forward_hook(on_attn_out, with_kwargs=True))

    try:
        handles.append(unet.conv_in.register_forward_pre_hook(on_conv_in, with_kwargs=True))
        for key, module in enumerate(unet.modules()):
            if isinstance(module, BasicTransformerBlock):
                watch(key, module)
        yield state
    finally:
        for handle in handles:
            handle.remove()
