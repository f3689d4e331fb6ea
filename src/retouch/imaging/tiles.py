"""Tile grids for tiled img2img (A1111's SD upscale script): tile positions, split, overlap blend.

Matches A1111's ``images.split_grid`` / ``combine_grid`` (v1.10.1), written from their behaviour:

* Positions. For an image ``w x h``, tiles ``tile_w x tile_h`` and ``overlap`` pixels:
  ``cols = ceil((w - overlap) / (tile_w - overlap))`` (rows alike), ``dx = (w - tile_w) / (cols - 1)``
  (0 for one column), tile ``c`` starts at ``x = int(c * dx)``, moved to ``w - tile_w`` when it would
  reach the right edge (``x + tile_w >= w``). Tiles are visited row by row, left to right.
* Blend. Each row is built on a black canvas as wide as the image: the first tile (``x == 0``) is
  pasted whole; every other tile pastes its left ``overlap`` columns through a horizontal ramp mask
  (column ``i`` has alpha ``uint8(i * 255 / overlap)``: 0 at the seam's left end, 251 for overlap 64)
  and the rest of the tile plainly after them. Rows are stacked the same way with a vertical ramp
  over the top ``overlap`` rows of every row but the first (``y == 0``). When tiles overlap by more
  than ``overlap`` pixels the later tile covers the rest of the shared area.

One deviation on purpose: an image smaller than one tile is refused (A1111 crops outside the image,
pads with black and pastes at a negative offset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["TileGrid", "tile_grid", "split_tiles", "combine_tiles", "image_row"]


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie: ``rows`` holds the ``y`` of each row; ``cols`` the ``x`` of each
    column (the same in every row). Tiles are numbered row by row: tile ``k`` is at
    ``(cols[k % len(cols)], rows[k // len(cols)])``."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    overlap: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """``(x1, y1, x2, y2)`` of every tile, in A1111's order (row by row, left to right)."""
        return [(x, y, x + self.tile_w, y + self.tile_h) for y in self.rows for x in self.cols]


def _starts(size: int, tile: int, overlap: int) -> tuple[int, ...]:
    n = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (n - 1) if n > 1 else 0
    out = []
    for k in range(n):
        start = int(k * step)
        out.append(size - tile if start + tile >= size else start)
    return tuple(out)


def tile_grid(width: int, height: int, tile_w: int, tile_h: int, overlap: int) -> TileGrid:
    """Tile positions for an image ``width x height`` (A1111 ``split_grid``; see the module docstring).

    Raises ValueError when ``overlap`` is not in ``[0, min(tile_w, tile_h))`` or the image is smaller
    than one tile.
    """
    if min(tile_w, tile_h) < 1:
        raise ValueError(f"tile size must be at least 1x1; got {tile_w}x{tile_h}")
    if not 0 <= overlap < min(tile_w, tile_h):
        raise ValueError(
            f"tile overlap must be at least 0 and less than the tile size {tile_w}x{tile_h}; got {overlap}"
        )
    if width < tile_w or height < tile_h:
        raise ValueError(
            f"the image ({width}x{height}) is smaller than one tile ({tile_w}x{tile_h}); "
            "use a larger scale or a smaller width and height"
        )
    return TileGrid(width, height, tile_w, tile_h, overlap, _starts(height, tile_h, overlap),
                    _starts(width, tile_w, overlap))


def split_tiles(image: Image.Image, grid: TileGrid) -> list[Image.Image]:
    """The tiles of ``image`` (``grid.width x grid.height``) in A1111's order; each ``tile_w x tile_h``."""
    if image.size != (grid.width, grid.height):
        raise ValueError(f"image size {image.size} differs from the grid's {(grid.width, grid.height)}")
    return [image.crop(box) for box in grid.boxes()]


def _ramp(overlap: int, length: int, horizontal: bool) -> Image.Image:
    values = (np.arange(overlap, dtype=np.float32) * 255 / overlap).astype(np.uint8)
    ramp = np.repeat(values[None, :], length, axis=0) if horizontal else np.repeat(values[:, None], length, axis=1)
    return Image.fromarray(ramp, "L")


def _paste_blended(canvas: Image.Image, part: Image.Image, at: int, overlap: int, horizontal: bool) -> None:
    """Paste ``part`` at offset ``at`` along one axis, its first ``overlap`` pixels through a ramp."""
    w, h = part.size
    if at == 0 or overlap == 0:
        canvas.paste(part, (at, 0) if horizontal else (0, at))
        return
    if horizontal:
        canvas.paste(part.crop((0, 0, overlap, h)), (at, 0), mask=_ramp(overlap, h, True))
        canvas.paste(part.crop((overlap, 0, w, h)), (at + overlap, 0))
    else:
        canvas.paste(part.crop((0, 0, w, overlap)), (0, at), mask=_ramp(overlap, w, False))
        canvas.paste(part.crop((0, overlap, w, h)), (0, at + overlap))


def combine_tiles(grid: TileGrid, tiles: list[Image.Image]) -> Image.Image:
    """Blend ``grid.count`` tiles (A1111's order, each ``tile_w x tile_h``) into one RGB image of the
    grid's size (A1111 ``combine_grid``; see the module docstring)."""
    if len(tiles) != grid.count:
        raise ValueError(f"the grid has {grid.count} tiles; got {len(tiles)}")
    out = Image.new("RGB", (grid.width, grid.height))
    n = len(grid.cols)
    for r, y in enumerate(grid.rows):
        row = Image.new("RGB", (grid.width, grid.tile_h))
        for c, x in enumerate(grid.cols):
            tile = tiles[r * n + c].convert("RGB")
            if tile.size != (grid.tile_w, grid.tile_h):
                raise ValueError(f"tile {r * n + c} is {tile.size}; expected {(grid.tile_w, grid.tile_h)}")
            _paste_blended(row, tile, x, grid.overlap, horizontal=True)
        _paste_blended(out, row, y, grid.overlap, horizontal=False)
    return out


def image_row(images: list[Image.Image]) -> Image.Image:
    """Images side by side on a black canvas, each at ``(i * w, 0)`` with the first one's size
    (A1111 ``image_grid(images, rows=1)``, as the Loopback script returns it)."""
    if not images:
        raise ValueError("image_row needs at least one image")
    w, h = images[0].size
    out = Image.new("RGB", (w * len(images), h), "black")
    for i, image in enumerate(images):
        out.paste(image, (i * w, 0))
    return out
