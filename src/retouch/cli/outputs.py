"""Output file names: A1111's ``00001-SEED.png`` counter, and batch names after the input's stem.

``img2img``/``inpaint`` follow A1111's default naming (spec §6.4): a 5-digit counter, one more than the
largest leading number of the files already in the folder, then the seed. A file is never replaced:
if another process takes a name first, the counter moves on. ``batch`` names outputs after the input
(A1111's batch tab: ``<stem>.png``, or ``<stem>-<n>.png`` when an input gives several images), so a
second run can tell which inputs are done.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from retouch.formats.png import save_png

__all__ = ["next_sequence_number", "save_numbered", "batch_names"]

_LEADING_NUMBER = re.compile(r"^(\d+)-")


def next_sequence_number(folder: Path) -> int:
    """One more than the largest ``NNNNN-`` prefix among the files in ``folder`` (1 when none)."""
    if not folder.is_dir():
        return 1
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _LEADING_NUMBER.match(p.name))]
    return max(numbers, default=0) + 1


def save_numbered(image: Image.Image, folder: Path, seed: int, infotext: str | None) -> Path:
    """Save as ``<folder>/<NNNNN>-<seed>.png`` with the next free counter; never overwrites."""
    folder.mkdir(parents=True, exist_ok=True)
    number = next_sequence_number(folder)
    while True:
        try:
            return save_png(image, folder / f"{number:05d}-{seed}.png", infotext, overwrite=False)
        except FileExistsError:
            number += 1


def batch_names(stem: str, count: int) -> list[str]:
    """Output names of one batch input: ``[stem.png]`` or ``[stem-1.png, ..., stem-<count>.png]``."""
    if count == 1:
        return [f"{stem}.png"]
    return [f"{stem}-{i}.png" for i in range(1, count + 1)]
