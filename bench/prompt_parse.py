"""Cost of A1111 prompt syntax before the text encoder (issue #11, Performance).

    .venv/bin/python bench/prompt_parse.py [--runs 200]

A ~150-token prompt with emphasis goes through the whole pure pipeline of ``retouch.prompts``: the
prompt schedule, the emphasis
fragments, ``normalize_text`` + the CLIP tokenizer per fragment, and chunking. The baseline is what
Retouch did before: the tokenizer alone on the same words without any syntax. Prints the median of
``--runs`` runs of each, their ratio, and the CPU. The first prompt has emphasis only, so no reading
of it can hold a prompt edit and the lark parser is skipped; the second adds one edit ``[a:b:0.4]``
(two schedule texts): it is parsed by lark once and memoised, so the figure "first time" (cache
cleared before every run) is what a new prompt costs, as it does in A1111.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from retouch.models.tokenizers import clip_tokenizer  # noqa: E402
from retouch.prompts import chunk_prompt, line_fragments, normalize_text, prompt_schedule  # noqa: E402
from retouch.prompts.schedule import _parse  # noqa: E402

BOS, EOS, COMMA = 49406, 49407, 267
EMPHASIS = (
    "masterpiece, (best quality:1.2), (ultra detailed), [blurry], a portrait of a young woman with "
    "((long flowing red hair)), (freckles:0.8), green eyes, wearing a (white linen dress:1.1), standing in "
    "a sunlit meadow full of [[tall grass]] and (wildflowers:1.3), soft golden hour light, (bokeh:0.9), "
    "shallow depth of field, 85mm lens, film grain, (kodak portra 400:1.15), gentle breeze, hair strands "
    "catching the light, [oversaturated], highly detailed skin texture, subsurface scattering, "
    "(cinematic composition:1.2), rule of thirds, distant mountains, (hazy atmosphere:0.7), warm color "
    "palette, artstation, trending, sharp focus on the eyes, (intricate embroidery on the dress:1.25), "
    "delicate hands, (natural pose), serene expression, clouds, birds in the sky"
)
EDITED = EMPHASIS.replace("sunlit meadow", "[sunlit meadow:moonlit field:0.4]")


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm caches (parser build, tokenizer)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _cpu() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        name += f", torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
    except Exception:  # noqa: BLE001 - the figure stands without it
        pass
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    cold_runs = max(1, min(args.runs, 20))

    tok = clip_tokenizer()

    def tokenize(texts):
        return tok([normalize_text(t) for t in texts], add_special_tokens=False, truncation=False, verbose=False)[
            "input_ids"
        ]

    def pipeline(prompt: str) -> list:
        out = []
        for _, text in prompt_schedule(prompt, 20):
            out.append(chunk_prompt(line_fragments(text, "Original"), tokenize, bos=BOS, eos=EOS, comma=COMMA))
        return out

    print(f"CPU: {_cpu()}; python {platform.python_version()}; median of {args.runs} runs ({cold_runs} cold)")
    for label, prompt in (("emphasis", EMPHASIS), ("emphasis + one edit", EDITED)):
        texts = [t for _, t in prompt_schedule(prompt, 20)]
        plain = "".join(t for t, _ in line_fragments(texts[0], "Original"))
        n_tokens = len(tok(plain, add_special_tokens=False)["input_ids"])

        def cold(prompt: str = prompt) -> None:
            _parse.cache_clear()
            pipeline(prompt)

        base = _median_ms(lambda: tok([plain], add_special_tokens=False, truncation=False)["input_ids"], args.runs)  # noqa: B023
        warm = _median_ms(lambda: pipeline(prompt), args.runs)  # noqa: B023
        first = _median_ms(cold, cold_runs)
        print(
            f"{label} ({n_tokens} tokens, {len(texts)} schedule text(s)): tokenizer only {base:.2f} ms; "
            f"syntax pipeline {warm:.2f} ms ({warm / base:.1f}x, +{warm - base:.2f} ms); "
            f"first time a prompt is seen (lark parse, not memoised) {first:.2f} ms"
        )


if __name__ == "__main__":
    main()
