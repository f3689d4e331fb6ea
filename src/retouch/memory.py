"""Memory budgets: ``max_memory`` values ("6G", "512M"), the machine's free memory, and VAE tile sizes.

Pure functions (parsing, the VAE's activation estimate, the tile choice) plus two small readers of
``/proc`` at the edge (:func:`read_mem_available`, :func:`resident_bytes`), which the runtime calls
when it decides whether to tile a VAE call (issue #17 item 6).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from retouch.params import ParamError

__all__ = [
    "parse_memory", "format_memory", "mem_available", "read_mem_available", "resident_bytes",
    "vae_bytes_per_pixel", "choose_tile", "MEMORY_FORMAT",
]

MEMORY_FORMAT = "a whole number of bytes or a number with a unit K, M, G or T (powers of 1024), e.g. 6G, 512M, 1.5G"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)


def parse_memory(value: int | str) -> int:
    """Bytes in ``value``: an int, or text like ``"6G"``, ``"512M"``, ``"1.5GiB"``, ``"4096"`` (units of 1024).

    >>> parse_memory("6G"), parse_memory("512m"), parse_memory(1000)
    (6442450944, 536870912, 1000)
    """
    if isinstance(value, bool):
        raise ParamError(f"max_memory must be {MEMORY_FORMAT}; got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and (m := _PATTERN.fullmatch(value)):
        number = math.floor(float(m[1]) * _UNITS[m[2].upper()])
    else:
        raise ParamError(f"max_memory must be {MEMORY_FORMAT}; got {value!r}")
    if number <= 0:
        raise ParamError(f"max_memory must be more than 0 bytes ({MEMORY_FORMAT}); got {value!r}")
    return number


def format_memory(n: int) -> str:
    """``n`` bytes in MiB or GiB with one decimal, for messages."""
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def mem_available(meminfo: str) -> int:
    """``MemAvailable`` of a ``/proc/meminfo`` text, in bytes (the kernel writes kB = KiB)."""
    m = re.search(r"^MemAvailable:\s+(\d+)\s*kB", meminfo, re.MULTILINE)
    if m is None:
        raise ValueError("no MemAvailable line in /proc/meminfo")
    return int(m[1]) * 1024


def read_mem_available() -> int | None:
    """What the machine has free now (``/proc/meminfo`` MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            return mem_available(f.read())
    except (OSError, ValueError):
        return None


def resident_bytes() -> int | None:
    """This process's resident set now (``/proc/self/statm``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


#: Full-resolution activations alive at once in one resnet block of the VAE's outermost level, besides
#: its input: GroupNorm output, SiLU output, conv output and the residual sum (diffusers'
#: ResnetBlock2D keeps the input for the shortcut; inference frees the rest as it goes). Checked once
#: against a measured peak: bench/README.md, "Memory".
LIVE_TENSORS = 5


def vae_bytes_per_pixel(config: Mapping[str, Any], element_bytes: int = 4) -> int:
    """Estimated peak activation bytes per image pixel of a VAE encode or decode (``AutoencoderKL`` config).

    ``LIVE_TENSORS x max_l(c_l / 4**l) x element_bytes``, ``c_l`` = ``block_out_channels[l]`` at level
    ``l`` (level 0 at full resolution, each next level at half the side, so a quarter of the pixels).
    The decoder's last level upsamples into full resolution with ``c_0`` channels, so the encoder's and
    the decoder's peaks are both at level 0: 5 x 128 x 4 = 2,560 bytes per pixel for SD's VAE (fp32).
    """
    channels = list(config["block_out_channels"])
    widest = max(c / 4**level for level, c in enumerate(channels))
    return int(LIVE_TENSORS * widest * element_bytes)


def choose_tile(latent_hw: tuple[int, int], pad: int, bytes_per_cell: int, allowance: int, *, minimum: int = 8) -> int | None:
    """Side of the square latent tile core that fits ``allowance`` bytes, or None when no tiling is needed.

    A tile with core ``t`` latent cells and ``pad`` cells of context on each side costs
    ``(t + 2 pad)^2 x bytes_per_cell``; the whole image costs ``h x w x bytes_per_cell``. The largest ``t``
    (at least ``minimum``, so a budget too small for any tile still runs, in the smallest tiles) is
    returned, capped below the image's longer side.
    """
    h, w = latent_hw
    if h * w * bytes_per_cell <= allowance:
        return None
    side = math.isqrt(max(allowance, 0) // max(bytes_per_cell, 1)) - 2 * pad
    return max(minimum, min(side, max(h, w) - 1))
