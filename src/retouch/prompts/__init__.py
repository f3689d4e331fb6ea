"""A1111's prompt language as pure functions (no torch): spec a1111-prompts.md.

Order of the stages for one job (spec §0.1, §1.1): :func:`parse_batch_extra_networks` strips
``<lora:...>`` tags from the positive prompts; :func:`multicond_prompt_list` splits ``AND``; each
sub-prompt gets :func:`prompt_schedule` (prompt editing, alternation); each schedule text gets
:func:`line_fragments` (emphasis, BREAK) and :func:`chunk_prompt` (77-token chunks, textual-inversion
placeholders); during sampling :func:`conditioning_index` picks the schedule entry per denoiser call.
lark and ftfy are imported on first use, not here.
"""

from retouch.prompts.attention import BREAK, is_break, parse_attention
from retouch.prompts.chunks import (
    CHUNK_LENGTH,
    EMPHASIS_MODES,
    chunk_prompt,
    embedding_lookup,
    line_fragments,
)
from retouch.prompts.composable import multicond_prompt_list, split_and
from retouch.prompts.networks import LORA_KINDS, LoraTag, extra_networks, lora_tag, parse_batch_extra_networks
from retouch.prompts.normalize import normalize_text
from retouch.prompts.schedule import conditioning_index, prompt_schedule, prompt_schedules
from retouch.prompts.types import Chunk, EmbeddingRef, NetworkTag, PromptChunks

__all__ = [
    "parse_attention", "BREAK", "is_break",
    "prompt_schedule", "prompt_schedules", "conditioning_index",
    "split_and", "multicond_prompt_list",
    "extra_networks", "parse_batch_extra_networks", "LoraTag", "lora_tag", "LORA_KINDS",
    "chunk_prompt", "line_fragments", "embedding_lookup", "EMPHASIS_MODES", "CHUNK_LENGTH",
    "normalize_text",
    "EmbeddingRef", "Chunk", "PromptChunks", "NetworkTag",
]
