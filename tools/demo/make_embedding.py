"""Make the demo model's textual-inversion embedding ``redcircle`` (a phrase packed into one word).

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python tools/demo/make_embedding.py

How it is made: no training. The demo CLIP's token-embedding rows of the phrase ``a large red circle``
(tokenized with the model's own tokenizer, without BOS/EOS: 4 tokens) are copied, in order, as the
embedding's 4 vectors. Writing ``redcircle`` in a prompt therefore puts exactly the token embeddings of
``a large red circle`` at those positions (positional embeddings are added after the swap, as for any
token), and the text encoder's output for ``redcircle`` is exactly its output for the phrase
(tests/models/networks/test_demo_embedding.py checks this): for the demo model the word means what the
phrase means. It is the same trick as A1111's "Initialization text" when an
embedding is created, without the training that would follow.

Output: ``src/retouch/demo/networks/embeddings/redcircle.safetensors``, kohya's layout
``{"emb_params": (4, 128) float32}`` (2 kB). The name is the file stem; it tokenizes to ``red`` +
``circle</w>``, ids no ordinary prompt writes (``red circle`` is ``red</w> circle</w>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from retouch.models.loading import load_model

PHRASE = "a large red circle"
NAME = "redcircle"
TARGET = Path(__file__).resolve().parents[2] / "src" / "retouch" / "demo" / "networks" / "embeddings"


def phrase_vectors(bundle: object, phrase: str) -> torch.Tensor:
    """The first text encoder's token-embedding rows of ``phrase`` (no BOS/EOS): ``(tokens, width)`` float32."""
    ids = bundle.tokenizers[0](phrase, add_special_tokens=False)["input_ids"]  # type: ignore[attr-defined]
    table = bundle.text_encoders[0].get_input_embeddings().weight  # type: ignore[attr-defined]
    return table[torch.tensor(ids)].detach().to(torch.float32).clone()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=TARGET / f"{NAME}.safetensors")
    args = ap.parse_args()
    vec = phrase_vectors(load_model("demo"), PHRASE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": vec.contiguous()}, str(args.out))
    print(f"wrote {args.out}: {tuple(vec.shape)} from {PHRASE!r}, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
