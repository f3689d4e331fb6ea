"""The LoRA shipped for the demo model (tools/demo/make_networks.py): it binds completely and does what
its docstring says at the level the UNet sees, cheaply (no sampling; the script's own check inpaints).

Thresholds come from the shipped file (regenerated for the demo v2 weights, 2026-12-01): after merging,
the cross-attention keys/values of "a large red circle" are within at most 0.21 of their distance to
those of "a large blue circle" (1.0 before), while those of "a large green circle" move by less than 0.15
of that distance.
"""

from __future__ import annotations

import torch

from retouch.models.loading import load_model
from retouch.models.networks.library import DEMO_LORA_DIR, LoraLibrary
from retouch.models.networks.patcher import ActiveNetwork, NetworkPatcher
from retouch.models.text import encode_texts


@torch.no_grad()
def test_red_to_blue_maps_red_onto_blue_and_keeps_green():
    bundle = load_model("demo")
    patcher = NetworkPatcher(bundle)
    entry = LoraLibrary(DEMO_LORA_DIR).find("red_to_blue")
    network = patcher.load(entry.path)
    assert network.unmatched == () and len(network.modules) == 14
    assert {".".join(m.target.path.split(".")[-2:]) for m in network.modules} == {"attn2.to_k", "attn2.to_v"}

    def context(prompt: str) -> torch.Tensor:
        return encode_texts(bundle.text_encoders, bundle.tokenizers, [prompt], base="sd1").cond.context[0]

    red, blue, green = context("a large red circle"), context("a large blue circle"), context("a large green circle")
    projections = [m.target.module for m in network.modules]
    gap = [(k(red) - k(blue)).norm() for k in projections]
    green_before = [k(green) for k in projections]
    patcher.apply([ActiveNetwork(network)])
    for k, d, g in zip(projections, gap, green_before, strict=True):
        assert (k(red) - k(blue)).norm() < 0.25 * d
        assert (k(green) - g).norm() < 0.15 * d
    patcher.apply([])
    assert all(torch.equal(k(green), g) for k, g in zip(projections, green_before, strict=True))
