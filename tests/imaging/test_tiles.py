"""Tile grids against A1111's split_grid / combine_grid (values worked out from their formulas)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retouch.imaging.tiles import combine_tiles, image_row, split_tiles, tile_grid


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "cols", "rows"),
    [
        # cols = ceil((1024-64)/(512-64)) = 3, dx = 512/2 = 256: 0, 256, 512 (512+512 >= 1024 -> 512)
        ((1024, 1024), (512, 512), 64, (0, 256, 512), (0, 256, 512)),
        # cols = ceil(936/448) = 3, dx = 488/2 = 244: 0, 244, 488; rows = ceil(704/448) = 2, dy = 256
        ((1000, 768), (512, 512), 64, (0, 244, 488), (0, 256)),
        # exactly one tile: ceil(56/56) = 1, x = 0 (0 + 64 >= 64 -> 64 - 64 = 0)
        ((64, 64), (64, 64), 8, (0,), (0,)),
        # A1111's test suite: 64x64 at scale 2 -> 128x128, tile 64, overlap 8: ceil(120/56) = 3, dx = 32
        ((128, 128), (64, 64), 8, (0, 32, 64), (0, 32, 64)),
        # overlap 0: ceil(100/48) = 3, dx = 52/2 = 26: 0, 26, 52
        ((100, 48), (48, 48), 0, (0, 26, 52), (0,)),
    ],
)
def test_tile_positions_follow_split_grid(size, tile, overlap, cols, rows) -> None:
    grid = tile_grid(*size, *tile, overlap)
    assert grid.cols == cols and grid.rows == rows
    assert grid.count == len(cols) * len(rows)
    boxes = grid.boxes()
    assert boxes[0] == (0, 0, tile[0], tile[1])
    assert boxes[1 if len(cols) > 1 else 0][0] == cols[min(1, len(cols) - 1)]  # row by row, left to right
    assert all(x2 <= size[0] and y2 <= size[1] for _, _, x2, y2 in boxes)


def test_split_tiles_are_the_crops_in_order() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (768, 1000, 3), dtype=np.uint8))
    grid = tile_grid(1000, 768, 512, 512, 64)
    tiles = split_tiles(image, grid)
    assert len(tiles) == 6
    assert tiles[4].tobytes() == image.crop((244, 256, 756, 768)).tobytes()


def test_horizontal_seam_is_a1111s_ramp() -> None:
    """96x64 in 64-wide tiles with overlap 32: tiles at x 0 and 32. The second tile's first 32 columns are
    pasted through the mask ``uint8(i * 255 / 32)``; over a black first tile a white second tile gives
    exactly that ramp (PIL: (255 m + 0 (255 - m)) / 255 = m), then white."""
    grid = tile_grid(96, 64, 64, 64, 32)
    assert grid.cols == (0, 32) and grid.rows == (0,)
    black, white = Image.new("RGB", (64, 64), 0), Image.new("RGB", (64, 64), (255, 255, 255))
    out = np.asarray(combine_tiles(grid, [black, white]))[..., 0]
    ramp = (np.arange(32, dtype=np.float32) * 255 / 32).astype(np.uint8)
    expected = np.concatenate([np.zeros(32, np.uint8), ramp, np.full(32, 255, np.uint8)])
    assert (out == expected[None, :]).all()
    assert ramp[:3].tolist() == [0, 7, 15] and ramp[-1] == 247


def test_vertical_seam_is_a1111s_ramp_across_the_row() -> None:
    grid = tile_grid(64, 96, 64, 64, 32)
    assert grid.rows == (0, 32)
    black, white = Image.new("RGB", (64, 64), 0), Image.new("RGB", (64, 64), (255, 255, 255))
    out = np.asarray(combine_tiles(grid, [black, white]))[..., 1]
    ramp = (np.arange(32, dtype=np.float32) * 255 / 32).astype(np.uint8)
    assert (out[32:64] == ramp[:, None]).all() and (out[:32] == 0).all() and (out[64:] == 255).all()


def test_combining_the_split_tiles_gives_the_image_back() -> None:
    """Blending identical pixels changes nothing: split then combine is the identity."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
    grid = tile_grid(300, 200, 128, 96, 16)
    assert combine_tiles(grid, split_tiles(image, grid)).tobytes() == image.tobytes()


@pytest.mark.parametrize(("size", "tile", "overlap"), [((64, 64), (64, 64), 64), ((32, 64), (64, 64), 8),
                                                        ((64, 64), (64, 64), -1)])
def test_bad_grids_are_refused(size, tile, overlap) -> None:
    with pytest.raises(ValueError, match="overlap|smaller than one tile"):
        tile_grid(*size, *tile, overlap)


def test_image_row_places_images_side_by_side() -> None:
    a, b = Image.new("RGB", (8, 4), (10, 0, 0)), Image.new("RGB", (8, 4), (0, 20, 0))
    row = image_row([a, b])
    assert row.size == (16, 4) and row.getpixel((3, 1)) == (10, 0, 0) and row.getpixel((12, 1)) == (0, 20, 0)
