"""A1111's uncond-skipping options (NGMS, Skip Early CFG) and cond/uncond padding in the CFG denoiser.

Expected values follow A1111 v1.10.1 ``CFGDenoiser.forward`` (sd_samplers_cfg_denoiser.py): Skip Early
CFG when ``skip_early_cond != 0 and step / total_steps <= skip_early_cond``, checked first; else NGMS
when ``(step % 2 or s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond`` and not an
edit model; a skipped call combines with the first sub-prompt's output as the uncond at scale 1.0.
The analytic model returns each row's ``context[:, 0, 0]``, so every branch's output is known.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from retouch.sampling.conditioning import Cond, CondSchedule, SubPrompt
from retouch.sampling.denoisers import CFGDenoiser
from retouch.sampling.guidance import NGMS, SKIP_EARLY, CondPadding, UncondSkip


class Recorder:
    """Analytic model: output = the row's context[:, 0, 0]; records each call's contexts and sigma."""

    def __init__(self) -> None:
        self.calls: list[Tensor] = []
        self.model_sigmas = torch.linspace(0.1, 10.0, 100)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        self.calls.append(cond.context.clone())
        return cond.context[:, 0, 0].reshape(-1, 1, 1, 1).expand(x.shape[0], *x.shape[1:]).clone()


def cond(value: float, tokens: int = 77) -> Cond:
    return Cond(torch.full((1, tokens, 4), float(value)))


X = torch.zeros(1, 4, 2, 2)
SIGMAS = (5.0, 3.0, 1.9, 1.5, 1.0, 0.5)


def _run(skip: UncondSkip, sigmas: tuple[float, ...] = SIGMAS, subprompts: list[SubPrompt] | None = None,
         ) -> tuple[list[float], list[int], CFGDenoiser]:
    model = Recorder()
    sp = subprompts or [SubPrompt(CondSchedule.constant(cond(1)))]
    d = CFGDenoiser(model, sp, cond(0), 7.0, skip=skip)  # type: ignore[arg-type]
    outs = [float(d(X, torch.tensor([s]))[0, 0, 0, 0]) for s in sigmas]
    return outs, [c.shape[0] - len(sp) for c in model.calls], d  # uncond rows per call


def test_ngms_skips_odd_calls_below_s_min_uncond() -> None:
    """s_min_uncond=2: calls 1,3,5 are odd; of those σ=1.5 and 0.5 are below 2 -> calls 3 and 5 skip.

    Skipped calls give the cond output (1) = fake uncond at scale 1; others u + 7(c − u) = 7.
    """
    outs, uncond_rows, d = _run(UncondSkip(s_min_uncond=2.0, total_calls=6))
    assert uncond_rows == [1, 1, 1, 0, 1, 0]
    assert outs == [7.0, 7.0, 7.0, 1.0, 7.0, 1.0]
    assert d.skipped == {NGMS: 2}


def test_ngms_all_steps_skips_every_call_below_s_min_uncond() -> None:
    """``s_min_uncond_all``: every call with σ < 2 skips (calls 2-5)."""
    outs, uncond_rows, _ = _run(UncondSkip(s_min_uncond=2.0, all_steps=True, total_calls=6))
    assert uncond_rows == [1, 1, 0, 0, 0, 0]
    assert outs == [7.0, 7.0, 1.0, 1.0, 1.0, 1.0]


def test_skip_early_cond_is_a_fraction_of_total_calls_and_checked_first() -> None:
    """skip_early_cond=0.4 of 6 calls: k/6 <= 0.4 for k = 0, 1, 2; NGMS (all steps, s=2) takes 3-5."""
    _, uncond_rows, d = _run(UncondSkip(s_min_uncond=2.0, all_steps=True, skip_early_cond=0.4, total_calls=6))
    assert uncond_rows == [0, 0, 0, 0, 0, 0]
    assert d.skipped == {SKIP_EARLY: 3, NGMS: 3}


def test_zero_options_skip_nothing() -> None:
    """A1111 v1.10 tests ``skip_early_cond != 0`` first, so 0/total <= 0 does not skip call 0."""
    outs, uncond_rows, d = _run(UncondSkip(total_calls=6))
    assert uncond_rows == [1] * 6 and outs == [7.0] * 6 and d.skipped == {}


def test_fake_uncond_with_and_is_the_first_sub_prompt() -> None:
    """AND c1=1 (w 1), c2=3 (w 0.5): skipped -> c1 + (c1−c1)·1 + (c2−c1)·0.5 = 2; else 17.5 (case 35)."""
    sp = [SubPrompt(CondSchedule.constant(cond(1)), 1.0), SubPrompt(CondSchedule.constant(cond(3)), 0.5)]
    outs, uncond_rows, _ = _run(UncondSkip(s_min_uncond=2.0, total_calls=6), subprompts=sp)
    assert uncond_rows == [1, 1, 1, 0, 1, 0]
    assert outs == [17.5, 17.5, 17.5, 2.0, 17.5, 2.0]


def test_ngms_compares_the_timestep_for_timestep_samplers() -> None:
    """DDIM in A1111 passes the timestep as ``sigma``: s_min_uncond=2 skips only where t < 2 (σ ≈ 0.1-0.3)."""
    skip = UncondSkip(s_min_uncond=2.0, all_steps=True, total_calls=3, on_timestep=True)
    _, uncond_rows, _ = _run(skip, sigmas=(1.5, 0.15, 0.1))
    assert uncond_rows == [1, 0, 0]  # t(1.5) ≈ 14, t(0.15) = 0.5, t(0.1) = 0


def test_ngms_is_not_applied_with_image_cfg_and_skip_early_refused() -> None:
    """A1111 excludes edit models from NGMS; Skip Early CFG there breaks A1111's batch, so it is refused."""
    model = Recorder()
    img = Cond(torch.zeros(1, 77, 4), concat=torch.ones(1, 4, 2, 2))
    c = Cond(torch.ones(1, 77, 4), concat=torch.ones(1, 4, 2, 2))
    d = CFGDenoiser(model, c, img, 7.0, image_cfg_scale=1.5,  # type: ignore[arg-type]
                    skip=UncondSkip(s_min_uncond=10.0, all_steps=True, total_calls=2))
    d(X, torch.tensor([1.0]))
    assert model.calls[0].shape[0] == 3 and d.skipped == {}
    with pytest.raises(ValueError, match="skip_early_cond"):
        CFGDenoiser(model, c, img, 7.0, image_cfg_scale=1.5,  # type: ignore[arg-type]
                    skip=UncondSkip(skip_early_cond=0.5, total_calls=2))


def _padded_call(padding: CondPadding, cond_tokens: int, uncond_tokens: int) -> tuple[list[Tensor], CFGDenoiser]:
    model = Recorder()
    c = Cond(torch.arange(cond_tokens, dtype=torch.float32).reshape(1, -1, 1).expand(1, -1, 4) + 1)
    u = Cond(-torch.arange(uncond_tokens, dtype=torch.float32).reshape(1, -1, 1).expand(1, -1, 4) - 1)
    d = CFGDenoiser(model, c, u, 7.0, padding=padding)  # type: ignore[arg-type]
    d(X, torch.tensor([1.0]))
    return model.calls, d


EMPTY = torch.full((1, 77, 4), 0.5)


def test_pad_cond_uncond_appends_the_empty_prompt_to_the_shorter() -> None:
    """pad_cond_uncond: 154 vs 77 tokens -> uncond + one empty chunk; one UNet call of 2 rows."""
    calls, d = _padded_call(CondPadding("pad", EMPTY), 154, 77)
    assert len(calls) == 1 and calls[0].shape == (2, 154, 4) and d.padded
    assert torch.equal(calls[0][1, 77:], EMPTY[0]) and calls[0][1, 76, 0] == -77
    calls, _ = _padded_call(CondPadding("pad", EMPTY), 77, 231)  # the cond is the shorter: two chunks
    assert calls[0].shape == (2, 231, 4) and torch.equal(calls[0][0, 77:], EMPTY[0].repeat(2, 1))


def test_pad_cond_uncond_v0_repeats_the_last_uncond_vector_or_truncates() -> None:
    """v0: uncond 77 -> 154 with its last vector (−77) repeated; uncond 231 -> truncated to 154."""
    calls, d = _padded_call(CondPadding("v0"), 154, 77)
    assert calls[0].shape == (2, 154, 4) and bool((calls[0][1, 77:] == -77).all()) and d.padded
    calls, _ = _padded_call(CondPadding("v0"), 154, 231)
    assert calls[0].shape == (2, 154, 4) and calls[0][1, 153, 0] == -154


def test_no_padding_when_lengths_match_or_option_off() -> None:
    """Equal lengths: nothing padded (flag False); off: separate calls per length (spec §3)."""
    calls, d = _padded_call(CondPadding("v0"), 77, 77)
    assert len(calls) == 1 and not d.padded
    model = Recorder()
    CFGDenoiser(model, cond(1, 154), cond(0, 77), 7.0)(X, torch.tensor([1.0]))  # type: ignore[arg-type]
    assert [c.shape[1] for c in model.calls] == [154, 77]
