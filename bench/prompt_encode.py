"""Prompt syntax plus encoding vs encoding the same tokens without syntax (issue #11, Performance).

    .venv/bin/python bench/prompt_encode.py [--runs 5] [--threads 1]

An SD1.5-sized CLIP ViT-L text encoder (random weights, ``bench/configs.py``) encodes the ~150-token
prompts of ``bench/prompt_parse.py`` through the engine's path (``retouch.prompting.build_conds``'s
steps: ``prompt_schedule`` -> ``models.text.encode_texts`` with emphasis ``Original``), against the same
words with every bracket and weight removed, encoded the same way (no emphasis maths runs for them).
The edited prompt has two schedule texts, so its baseline is those two plain texts encoded together.
"First time" clears the schedule parser's memo before each run (a prompt never seen before). Prints
medians, ratios and the CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from configs import SD15_TEXT  # noqa: E402
from prompt_parse import EDITED, EMPHASIS, _cpu, _median_ms  # noqa: E402

from retouch.models.text import encode_texts  # noqa: E402
from retouch.prompts import line_fragments, prompt_schedule  # noqa: E402
from retouch.prompts.schedule import _parse  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import CLIPTextConfig, CLIPTextModel

    from retouch.models.tokenizers import clip_tokenizer

    torch.manual_seed(0)
    encoders, tokenizers = (CLIPTextModel(CLIPTextConfig(**SD15_TEXT)).eval(),), (clip_tokenizer(),)

    def encode(texts: list[str]) -> object:
        return encode_texts(encoders, tokenizers, texts, base="sd1", emphasis="Original")

    print(f"CPU: {_cpu()}; {args.threads} thread(s); median of {args.runs} runs")
    for label, prompt in (("emphasis", EMPHASIS), ("emphasis + one edit", EDITED)):
        texts = [t for _, t in prompt_schedule(prompt, 20)]
        plain = ["".join(t for t, _ in line_fragments(text, "Original")) for text in texts]

        def full(prompt: str = prompt) -> object:
            return encode([t for _, t in prompt_schedule(prompt, 20)])

        def first(prompt: str = prompt) -> object:
            _parse.cache_clear()
            return full(prompt)

        base = _median_ms(lambda: encode(plain), args.runs)  # noqa: B023
        warm = _median_ms(full, args.runs)
        cold = _median_ms(first, args.runs)
        print(f"{label} ({len(texts)} text(s)): plain tokens {base:.1f} ms; with syntax {warm:.1f} ms "
              f"({warm / base:.3f}x); first time seen {cold:.1f} ms ({cold / base:.3f}x)")


if __name__ == "__main__":
    main()
