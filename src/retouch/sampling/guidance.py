"""A1111's speed options of the CFG denoiser: skipping the uncond branch, and cond/uncond padding.

Two rules leave out the uncond branch of one denoiser call (A1111 v1.10 ``CFGDenoiser.forward``):

* "Skip Early CFG" (option ``skip_early_cond`` = f, 0 = off): on call ``k`` of ``total_calls``
  (A1111's ``total_steps``: sampler steps run, doubled for second-order samplers) when
  ``k / total_calls <= f``. It is checked first.
* NGMS (``s_min_uncond`` = s, 0 = off): when ``sigma < s``, on odd calls only unless ``all_steps``
  (option ``s_min_uncond_all``); never for an edit model with image CFG. A1111's timestep samplers
  (DDIM) pass the timestep in place of sigma, so there ``t < s`` is compared.

A skipped call combines with the "fake uncond" = the first sub-prompt's output and scale 1.0:
``x0 = c_0 + Σ_k (c_k − c_0)·w_k`` (spec a1111-prompts.md §3).

Padding (spec a1111-prompts.md §2.5): ``pad_cond_uncond`` appends copies of the encoded empty
prompt (one 77-token chunk) to the shorter context; ``pad_cond_uncond_v0`` (checked first) repeats
the uncond's last token vector, or truncates the uncond. Either lets cond and uncond share one UNet
call when their lengths differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from retouch.sampling.conditioning import Cond

__all__ = ["UncondSkip", "CondPadding", "SKIP_EARLY", "NGMS"]

SKIP_EARLY = "skip_early_cond"
NGMS = "s_min_uncond"


@dataclass(frozen=True)
class UncondSkip:
    """When A1111 skips the uncond branch (module docstring); the defaults skip nothing."""

    s_min_uncond: float = 0.0
    all_steps: bool = False
    skip_early_cond: float = 0.0
    total_calls: int = 1
    on_timestep: bool = False  # a timestep sampler: NGMS compares the timestep, as A1111 does

    def reason(self, call: int, sigma: float, t: float, *, edit: bool) -> str | None:
        """``SKIP_EARLY``, ``NGMS`` or None for 0-based denoiser call ``call`` at ``sigma`` (timestep ``t``)."""
        if self.skip_early_cond != 0.0 and call / self.total_calls <= self.skip_early_cond:
            return SKIP_EARLY
        level = t if self.on_timestep else sigma
        if (call % 2 or self.all_steps) and self.s_min_uncond > 0 and level < self.s_min_uncond and not edit:
            return NGMS
        return None


@dataclass(frozen=True)
class CondPadding:
    """``mode`` "pad" (``pad_cond_uncond``, needs ``empty``: the empty prompt's (1, 77, D) context) or "v0"."""

    mode: str
    empty: Tensor | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("pad", "v0"):
            raise ValueError(f"padding mode must be 'pad' or 'v0'; got {self.mode!r}")
        if self.mode == "pad" and self.empty is None:
            raise ValueError("pad_cond_uncond needs the encoded empty prompt")

    def apply(self, conds: list[Cond], uncond: Cond) -> tuple[list[Cond], Cond, bool]:
        """The padded sub-prompt conds (all one length) and uncond, and whether anything changed."""
        n_cond, n_uncond = conds[0].context.shape[1], uncond.context.shape[1]
        if n_cond == n_uncond:
            return conds, uncond, False
        if self.mode == "v0":
            u = uncond.context
            if n_uncond < n_cond:
                u = torch.cat([u, u[:, -1:].expand(-1, n_cond - n_uncond, -1)], dim=1)
            else:
                u = u[:, :n_cond]
            return conds, replace(uncond, context=u), True
        assert self.empty is not None
        chunk = self.empty.shape[1]
        repeats = (n_cond - n_uncond) // chunk  # A1111 floors; contexts are whole chunks
        if repeats < 0:
            return [_append_empty(c, -repeats, self.empty) for c in conds], uncond, True
        if repeats > 0:
            return conds, _append_empty(uncond, repeats, self.empty), True
        return conds, uncond, False


def _append_empty(cond: Cond, repeats: int, empty: Tensor) -> Cond:
    """A1111 ``pad_cond``: ``cat([context, empty.repeat(B, repeats, 1)], dim=1)``."""
    context = cond.context
    pad = empty.to(context.device, context.dtype).repeat(context.shape[0], repeats, 1)
    return replace(cond, context=torch.cat([context, pad], dim=1))
