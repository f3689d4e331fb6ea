"""Tiled VAE (retouch.vae_tiles): the grid, the receptive-field pads, and tiled against untiled results.

Differences are measured as A1111 maps decoder output to pixels, ``clamp((x + 1) / 2, 0, 1) x 255``, on
the float result before the uint8 truncation (truncation can flip a value sitting on an integer
boundary by one level for any difference, however small).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from retouch import Engine, Img2Img
from retouch.testing import tiny_model
from retouch.vae_tiles import decoder_pad, encoder_pad, tile_grid, tiled_decode, tiled_encode

SD_VAE = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2}


def _levels(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.clamp(-1, 1) - b.clamp(-1, 1)) * 127.5).abs().max())


def test_grid_cores_partition_the_latent_and_boxes_add_the_pad() -> None:
    grid = tile_grid(10, 7, 4, 2)
    assert len(grid.cores) == 3 * 2
    seen = np.zeros((10, 7), dtype=int)
    for (y0, y1, x0, x1), (by0, by1, bx0, bx1) in zip(grid.cores, grid.boxes, strict=True):
        seen[y0:y1, x0:x1] += 1
        assert (by0, by1, bx0, bx1) == (max(0, y0 - 2), min(10, y1 + 2), max(0, x0 - 2), min(7, x1 + 2))
    assert (seen == 1).all()


def test_pads_are_the_receptive_field_radius() -> None:
    """SD: encoder 1/8 + (4+2)/8 + (4+2)/4 + (4+2)/2 + 4/1 = 9.375 -> 10; decoder 6 + 1/2 + 6/2 + 1/4 +
    6/4 + 1/8 + 6/8 + conv_out 1/8 = 12.25 -> 13 latent cells."""
    assert (encoder_pad(SD_VAE), decoder_pad(SD_VAE)) == (10, 13)


@pytest.fixture(scope="module")
def tiny_vae() -> torch.nn.Module:
    return tiny_model(seed=0).vae.float().eval()


def test_tiny_random_vae_tiled_matches_untiled(tiny_vae: torch.nn.Module) -> None:
    """Random weights make the fast statistics diverge (naive tiling is off by ~85 levels here), so this
    exercises the exact statistics path: well under one level, and latents within 1e-4."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 128, 128, generator=g) * 2 - 1
    z = torch.randn(1, 4, 16, 16, generator=g)
    with torch.inference_mode():
        ref_moments = tiny_vae.quant_conv(tiny_vae.encoder(x))
        ref = tiny_vae.decode(z).sample
        moments = tiled_encode(tiny_vae, x, 8)
        out = tiled_decode(tiny_vae, z, 8)
    assert moments.shape == ref_moments.shape and out.shape == ref.shape == (1, 3, 128, 128)
    assert float((moments - ref_moments).abs().max()) < 1e-4
    assert _levels(out, ref) < 0.05


def test_demo_vae_decode_tiled_matches_untiled() -> None:
    """The trained demo VAE takes the fast path (two sweeps); 4 tiles of a 32x32 latent."""
    from retouch import load_model

    vae = load_model("demo").vae.float().eval()
    z = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert _levels(tiled_decode(vae, z, 16), vae.decode(z).sample) < 0.1


def _job(size: int = 128) -> Img2Img:
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return Img2Img(init_images=(Image.fromarray(pixels),), prompt="a cat", steps=2, denoising_strength=0.5,
                   seed=1, width=size, height=size)


def test_engine_tiles_under_a_small_budget_only() -> None:
    """1 MiB is less than this process already holds, so every VAE call runs in the smallest tiles: a
    16x16 latent in 8-cell cores is 4 tiles per call. The default budget (MemAvailable) does not tile."""
    untiled = Engine(tiny_model(seed=0), precision="fp32")
    plain = untiled.run(_job())
    assert untiled.runtime.vae_tiles == {"encode": 0, "decode": 0}
    tiled = Engine(tiny_model(seed=0), precision="fp32", max_memory="1M")
    result = tiled.run(_job())
    assert tiled.runtime.vae_tiles == {"encode": 4, "decode": 4}
    assert any("VAE decode tiled (4 tiles of 64 px)" in c for c in result.comments)
    a, b = (np.asarray(r.images[0], dtype=int) for r in (plain, result))
    assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 0.01  # truncation flips only


def test_engine_rejects_a_bad_budget() -> None:
    with pytest.raises(ValueError, match="max_memory must be"):
        Engine(tiny_model(seed=0), precision="fp32", max_memory="lots")
