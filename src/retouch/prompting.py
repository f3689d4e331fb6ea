"""A job's prompts -> the conditioning schedules the CFG denoiser uses, as A1111's ``setup_conds``.

Order of operations (spec a1111-prompts.md §0.1): extra-network tags are stripped from the positive
prompt only (a tag in the negative prompt stays literal text); the positive prompt is split on
``AND`` into weighted sub-prompts (§1.3), the negative prompt is not; every (sub-)prompt becomes a
prompt-editing schedule for A1111's step count, ``steps`` (×2 for second-order samplers), also in
img2img, where fewer calls run (§1.7, case 15); all texts of one schedule are encoded together (the
emphasis batch, §1.8). SDXL's negative prompt made only of empty texts is zeroed (§2.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from retouch.models.text import EmbeddingSource, EncodedTexts
from retouch.prompts import prompt_schedule, split_and
from retouch.runtime import Runtime
from retouch.sampling.conditioning import Cond, CondSchedule, SubPrompt

__all__ = ["JobConds", "TextRequest", "build_conds", "schedule_steps"]


def schedule_steps(steps: int, second_order: bool) -> int:
    """A1111's ``total_steps`` for prompt schedules: the user's steps, doubled for second-order samplers."""
    return steps * 2 if second_order else steps


@dataclass(frozen=True)
class TextRequest:
    """What the text encoder needs besides the prompt texts."""

    steps: int
    batch: int
    width: int
    height: int
    clip_skip: int = 1
    emphasis: str = "Original"
    embeddings: EmbeddingSource | None = None
    cache_key: Any = None
    image_cond: Tensor | None = None


@dataclass(frozen=True)
class JobConds:
    """Positive sub-prompts, the negative schedule, and what the encoder reports for the infotext."""

    subprompts: tuple[SubPrompt, ...]
    uncond: CondSchedule
    embeddings_used: tuple[str, ...]
    token_counts: tuple[int, ...]
    bracketed: bool = False  # some encoded text holds "(" or "[": A1111's condition for the Emphasis key


def _schedule(runtime: Runtime, prompt: str, req: TextRequest, *, negative: bool) -> tuple[CondSchedule, EncodedTexts, list[str]]:
    entries = prompt_schedule(prompt, req.steps)
    texts = [text for _, text in entries]
    encoded = runtime.encode_texts(texts, clip_skip=req.clip_skip, emphasis=req.emphasis,
                                   embeddings=req.embeddings, cache_key=req.cache_key)
    zero = negative and runtime.model.family.is_sdxl and all(t == "" for t in texts)
    conds: list[Cond] = []
    for row in range(len(texts)):
        cond = runtime.text_cond(encoded.cond, row, req.batch, req.width, req.height, zero=zero)
        if req.image_cond is not None:
            cond = Cond(cond.context, cond.pooled, cond.time_ids, req.image_cond)
        conds.append(cond)
    ends = tuple(end for end, _ in entries)
    return CondSchedule(ends, tuple(conds)), encoded, texts


def build_conds(runtime: Runtime, prompt: str, negative_prompt: str, req: TextRequest) -> JobConds:
    """Encode ``prompt`` (tags already removed) and ``negative_prompt`` for one job (module docstring)."""
    uncond, encoded, texts = _schedule(runtime, negative_prompt, req, negative=True)
    used = dict.fromkeys(encoded.embeddings_used)
    counts: list[int] = []
    subprompts: list[SubPrompt] = []
    for text, weight in split_and(prompt):
        schedule, encoded, schedule_texts = _schedule(runtime, text, req, negative=False)
        used.update(dict.fromkeys(encoded.embeddings_used))
        counts.extend(encoded.token_counts)
        texts.extend(schedule_texts)
        subprompts.append(SubPrompt(schedule, weight))
    bracketed = any("(" in t or "[" in t for t in texts)
    return JobConds(tuple(subprompts), uncond, tuple(used), tuple(counts), bracketed)
