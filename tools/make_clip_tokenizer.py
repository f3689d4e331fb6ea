"""Derive CLIP's ``vocab.json`` and ``merges.txt`` from OpenAI's BPE table, for offline tokenizers.

The BPE table ``bpe_simple_vocab_16e6.txt.gz`` ships inside the ``open-clip-torch`` wheel (MIT). The
vocabulary is rebuilt in OpenAI CLIP's id order: 256 byte symbols, the same with ``</w>``, one entry
per merge, then ``<|startoftext|>`` and ``<|endoftext|>`` (49,408 in all).

Usage::

    pip download --no-deps -d /tmp/oc open-clip-torch
    python tools/make_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl src/retouch/models/configs/clip
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build(bpe_text: str) -> tuple[dict[str, int], list[str]]:
    lines = bpe_text.split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, [" ".join(m) for m in merges]


def main(wheel: str, out_dir: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
    vocab, merges = build(gzip.decompress(raw).decode("utf-8"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
