"""Memory budgets (retouch.memory): parsing, MemAvailable, the VAE activation estimate, the tile choice."""

from __future__ import annotations

import pytest

from retouch.memory import choose_tile, mem_available, parse_memory, vae_bytes_per_pixel
from retouch.params import ParamError

SD_VAE = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2}


@pytest.mark.parametrize(("text", "expected"), [
    ("6G", 6 * 2**30), ("512M", 512 * 2**20), ("512m", 512 * 2**20), ("1.5G", 3 * 2**29), ("4096", 4096),
    ("2GiB", 2 * 2**30), ("100KB", 102400), (" 1T ", 2**40), (7, 7),
])
def test_parse_memory_units_are_powers_of_1024(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["", "6X", "-1G", "0", "G", "six", "1,5G", True, 0, -3, 1.5])
def test_parse_memory_rejects_with_the_allowed_format(bad: object) -> None:
    with pytest.raises(ParamError, match=r"max_memory must be .*6G, 512M"):
        parse_memory(bad)  # type: ignore[arg-type]


def test_mem_available_reads_kib() -> None:
    text = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   22000000 kB\n"
    assert mem_available(text) == 22000000 * 1024
    with pytest.raises(ValueError, match="MemAvailable"):
        mem_available("MemTotal: 1 kB\n")


def test_vae_estimate_formula_for_sd() -> None:
    """5 live tensors x 128 channels x 4 bytes at full resolution (level 0 is the widest per pixel)."""
    assert vae_bytes_per_pixel(SD_VAE) == 2560
    assert vae_bytes_per_pixel(SD_VAE, element_bytes=2) == 1280
    # a VAE whose level 1 is wider per pixel than level 0: 5 x 1024/4 x 4
    assert vae_bytes_per_pixel({"block_out_channels": (64, 1024)}) == 5120


def test_choose_tile() -> None:
    """(t + 2 pad)^2 x bytes <= allowance: isqrt(40000 // 16) - 2 x 13 = 50 - 26 = 24."""
    assert choose_tile((64, 64), 13, 4, 64 * 64 * 4) is None  # the whole latent fits
    assert choose_tile((64, 64), 13, 16, 40000) == 24
    assert choose_tile((64, 64), 0, 1, 4095) == 63  # isqrt(4095) = 63, capped below the side 64
    assert choose_tile((64, 64), 13, 4, 30 * 30 * 4 + 3) == 8  # 30 - 26 = 4 < the minimum
    assert choose_tile((64, 64), 13, 4, -5) == 8  # over budget already: the smallest tiles
    assert choose_tile((64, 64), 2, 1, 20 * 20) == 16
