"""Per-call conditioning schedules and composable AND in the CFG denoiser (spec a1111-prompts.md §1.7, §3).

The model here is analytic: it returns, for every row, the value stored in that row's context
``context[:, 0, 0]``, so each branch's output is known exactly and the denoiser's combine and
schedule lookup can be checked against A1111's formulas.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from retouch.sampling.conditioning import Cond, CondSchedule, SubPrompt, combine_composable, pad_contexts
from retouch.sampling.denoisers import CFGDenoiser


class Recorder:
    """Analytic model: output = the row's context[:, 0, 0] broadcast to x; records every call."""

    def __init__(self) -> None:
        self.calls: list[Tensor] = []

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        self.calls.append(cond.context.clone())
        return cond.context[:, 0, 0].reshape(-1, 1, 1, 1).expand_as(x).clone()


def cond(value: float, tokens: int = 77, batch: int = 1) -> Cond:
    return Cond(torch.full((batch, tokens, 4), float(value)))


X = torch.zeros(1, 4, 2, 2)
SIGMA = torch.tensor([1.0])


def test_and_combine_matches_a1111_case_35() -> None:
    """Case 35: u=0, c1=1 (weight 1), c2=3 (weight 0.5), scale 7 -> 0 + 7·1 + 3.5·3 = 17.5."""
    model = Recorder()
    d = CFGDenoiser(model, [SubPrompt(CondSchedule.constant(cond(1)), 1.0),
                            SubPrompt(CondSchedule.constant(cond(3)), 0.5)], cond(0), 7.0)
    out = d(X, SIGMA)
    assert torch.equal(out, torch.full_like(X, 17.5))
    assert len(model.calls) == 1 and model.calls[0].shape[0] == 3  # one batched call: c1, c2, u


def test_combine_composable_is_not_normalised_and_allows_negative_weights() -> None:
    """``u + Σ (c_k − u)·w_k·s``: weights 1 and −1 on equal conds cancel to u; 0.25 scales linearly."""
    u, c = torch.tensor([2.0]), torch.tensor([5.0])
    assert combine_composable([c, c], [1.0, -1.0], u, 7.0).item() == 2.0
    assert combine_composable([c], [0.25], u, 4.0).item() == 2.0 + 3.0 * 1.0


def test_single_prompt_equals_plain_cfg_bitwise() -> None:
    """With one sub-prompt of weight 1 the combine is A1111's plain CFG ``u + s·(c − u)``."""
    torch.manual_seed(0)
    c, u = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert torch.equal(combine_composable([c], [1.0], u, 7.5), u + 7.5 * (c - u))


def _calls_texts(ends: tuple[int, ...], values: tuple[float, ...], calls: int) -> list[float]:
    model = Recorder()
    d = CFGDenoiser(model, CondSchedule(ends, tuple(cond(v) for v in values)), cond(0), 7.0)
    for _ in range(calls):
        d(X, SIGMA)
    return [float(c[0, 0, 0]) for c in model.calls]


def test_prompt_editing_uses_a1111s_zero_based_lookup_case_14() -> None:
    """Case 14: ``[a:b:0.5]`` at 10 steps is [[5,a],[10,b]]; 10 calls -> a×6, b×4; 14 calls wrap to a."""
    assert _calls_texts((5, 10), (1.0, 2.0), 10) == [1.0] * 6 + [2.0] * 4
    assert _calls_texts((5, 10), (1.0, 2.0), 14) == [1.0] * 6 + [2.0] * 5 + [1.0] * 3


def test_alternation_schedule_case_14() -> None:
    """Case 14: ``[a|b]`` at 10 steps gives ends 1..10 alternating a, b; calls use a a b a b a b a b a."""
    ends = tuple(range(1, 11))
    values = tuple(1.0 if i % 2 == 0 else 2.0 for i in range(10))
    got = _calls_texts(ends, values, 10)
    assert got == [1.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]


def test_uncond_follows_its_own_schedule() -> None:
    """Negative prompts get prompt editing too: the uncond row switches at its own boundary."""
    model = Recorder()
    d = CFGDenoiser(model, cond(5), CondSchedule((1, 10), (cond(-1), cond(-2))), 1.5)
    for _ in range(3):
        d(X, SIGMA)
    assert [float(c[1, 0, 0]) for c in model.calls] == [-1.0, -1.0, -2.0]


def test_sub_prompts_of_different_lengths_are_padded_with_their_last_token() -> None:
    """A1111 ``stack_conds``: a 77-token sub-prompt beside a 154-token one repeats its last vector."""
    short = Cond(torch.arange(77 * 4, dtype=torch.float32).reshape(1, 77, 4))
    long = cond(3, tokens=154)
    (a, b) = pad_contexts([short, long])
    assert a.context.shape == b.context.shape == (1, 154, 4)
    assert torch.equal(a.context[:, :77], short.context)
    assert torch.equal(a.context[0, 77:], short.context[0, -1:].expand(77, 4))


def test_cond_and_uncond_of_different_lengths_run_as_separate_calls() -> None:
    """Cond and uncond are never padded to each other: two UNet calls, each of its own length."""
    model = Recorder()
    d = CFGDenoiser(model, cond(2, tokens=154), cond(0, tokens=77), 3.0)
    out = d(X, SIGMA)
    assert [c.shape[1] for c in model.calls] == [154, 77]
    assert torch.equal(out, torch.full_like(X, 6.0))


def test_uncond_skipped_only_when_it_cannot_matter() -> None:
    """cfg 1 with one weight-1 prompt is exactly c (no uncond call); cfg 1 with AND needs the uncond."""
    model = Recorder()
    d = CFGDenoiser(model, cond(2), cond(0), 1.0)
    assert torch.equal(d(X, SIGMA), torch.full_like(X, 2.0)) and model.calls[0].shape[0] == 1
    model2 = Recorder()
    d2 = CFGDenoiser(model2, [SubPrompt(CondSchedule.constant(cond(2)), 1.0),
                              SubPrompt(CondSchedule.constant(cond(4)), 0.5)], cond(0), 1.0)
    assert torch.equal(d2(X, SIGMA), torch.full_like(X, 2.0 + 2.0))
    assert model2.calls[0].shape[0] == 3


def test_last_denoised_is_the_first_sub_prompt() -> None:
    """A1111 keeps the x0 of each image's first sub-prompt for previews and interrupts (§3)."""
    d = CFGDenoiser(Recorder(), [SubPrompt(CondSchedule.constant(cond(7))), SubPrompt(CondSchedule.constant(cond(9)))],
                    cond(0), 2.0)
    d(X, SIGMA)
    assert d.last_denoised is not None and torch.equal(d.last_denoised, torch.full_like(X, 7.0))


def test_image_cfg_refuses_and() -> None:
    """A1111 asserts one sub-prompt per image for edit models with image CFG (§3)."""
    with pytest.raises(ValueError, match="AND"):
        CFGDenoiser(Recorder(), [SubPrompt(CondSchedule.constant(cond(1))), SubPrompt(CondSchedule.constant(cond(2)))],
                    cond(0), 7.0, image_cfg_scale=1.5)


def test_schedule_needs_matching_lengths() -> None:
    with pytest.raises(ValueError, match="one end step per conditioning"):
        CondSchedule((1, 2), (cond(1),))
