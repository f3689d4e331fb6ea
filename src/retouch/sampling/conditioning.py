"""Conditioning as a schedule over denoiser calls, and composable diffusion (``AND``).

A1111 encodes every prompt-editing text of a (sub-)prompt up front and, on each denoiser call, picks
the entry for its 0-based call counter: the first entry whose ``end_at_step`` is at least the counter,
or entry 0 when the counter has run past the last one (spec a1111-prompts.md §1.7). ``AND`` splits a
prompt into weighted sub-prompts whose CFG terms are summed without normalisation (§3):
``denoised = u + Σ_k (c_k − u) · (w_k · s)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from retouch.prompts import conditioning_index

__all__ = ["Cond", "CondSchedule", "SubPrompt", "pad_contexts", "combine_composable"]


@dataclass(frozen=True)
class Cond:
    """Conditioning for one UNet call, batch-first.

    ``context``: text embeddings (B, T, D). ``pooled``/``time_ids``: SDXL's pooled text embedding
    (B, P) and size/crop ids (B, 6). ``concat``: extra UNet input channels (B, C, h, w) appended after
    the scaled latent (inpainting: [mask, masked-image latent]; pix2pix: image latent).
    """

    context: Tensor
    pooled: Tensor | None = None
    time_ids: Tensor | None = None
    concat: Tensor | None = None

    def cat(self, other: Cond) -> Cond:
        """Concatenate two conditionings along the batch axis (for one batched CFG call)."""

        def join(a: Tensor | None, b: Tensor | None) -> Tensor | None:
            return None if a is None or b is None else torch.cat([a, b])

        return Cond(
            torch.cat([self.context, other.context]),
            join(self.pooled, other.pooled),
            join(self.time_ids, other.time_ids),
            join(self.concat, other.concat),
        )


@dataclass(frozen=True)
class CondSchedule:
    """Conditionings of one (sub-)prompt and the last denoiser call each is used for.

    ``ends[i]`` is A1111's ``end_at_step`` of entry ``i``; ``conds[i]`` is batch-first (B rows).
    """

    ends: tuple[int, ...]
    conds: tuple[Cond, ...]

    def __post_init__(self) -> None:
        if not self.conds or len(self.ends) != len(self.conds):
            raise ValueError("a conditioning schedule needs one end step per conditioning, and at least one")

    @classmethod
    def constant(cls, cond: Cond) -> CondSchedule:
        """A schedule that uses ``cond`` on every call."""
        return cls((1,), (cond,))

    def at(self, call: int) -> Cond:
        """The conditioning A1111 uses on 0-based denoiser call ``call``."""
        return self.conds[conditioning_index(self.ends, call)]


@dataclass(frozen=True)
class SubPrompt:
    """One ``AND`` part of the positive prompt: its schedule and its weight (default 1)."""

    schedule: CondSchedule
    weight: float = 1.0


def pad_contexts(conds: Sequence[Cond]) -> list[Cond]:
    """Bring text contexts to one token length by repeating each one's last token vector.

    A1111's ``stack_conds`` does this for the sub-prompts of a batch (spec §1.7); cond and uncond are
    never padded to each other (they go to separate UNet calls when their lengths differ, §3).
    """
    longest = max(c.context.shape[1] for c in conds)
    out = []
    for c in conds:
        missing = longest - c.context.shape[1]
        if missing:
            last = c.context[:, -1:].expand(-1, missing, -1)
            c = Cond(torch.cat([c.context, last], dim=1), c.pooled, c.time_ids, c.concat)
        out.append(c)
    return out


def combine_composable(conds: Sequence[Tensor], weights: Sequence[float], uncond: Tensor, scale: float) -> Tensor:
    """``u + Σ_k (c_k − u) · (w_k · s)`` (A1111 ``combine_denoised``, spec §3); weights not normalised."""
    denoised = uncond.clone()
    for c, w in zip(conds, weights, strict=True):
        denoised += (c - uncond) * (w * scale)
    return denoised
