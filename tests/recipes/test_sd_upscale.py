"""The SD upscale recipe on the tiny model, against what A1111's script does with the same engine calls."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from retouch import Engine, Img2Img, ParamError
from retouch.imaging.tiles import combine_tiles, split_tiles, tile_grid
from retouch.imaging.upscale import upscale_image
from retouch.infotext import parse_infotext
from retouch.recipes import Hooks, SDUpscale, parse_script, run_script, script_job_count
from retouch.testing import tiny_model


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(tiny_model(seed=0), precision="fp32")


def _scene(w: int = 40, h: int = 24) -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _job(**kw: object) -> Img2Img:
    base: dict[str, object] = dict(prompt="a cat", init_images=[_scene()], steps=2, width=32, height=32,
                                   seed=100, sampler_name="Euler", denoising_strength=0.5)
    base.update(kw)
    return Img2Img(**base)  # type: ignore[arg-type]


def test_tiles_run_in_order_with_a1111s_seeds_and_are_blended(engine: Engine) -> None:
    """40x24 x2 with Lanczos -> 80x48; 32x32 tiles with overlap 8: cols ceil(72/24) = 3 at 0, 24, 48,
    rows ceil(40/24) = 2 at 0, 16: 6 tiles. Batch size 2 gives 3 batches; A1111 starts batch k at the
    previous batch's first seed + 1, so the batches' seeds are (100, 101), (101, 102), (102, 103). The
    result must be combine_grid of exactly those img2img outputs."""
    call = parse_script("SD upscale", ["", 8, "Lanczos", 2.0])
    job = _job(batch_size=2)
    steps: list[tuple[int, int]] = []
    result = run_script(engine, job, call, Hooks(on_step=lambda s: steps.append((s.job_no, s.job_count))))
    big = upscale_image(_scene(), 2.0, "Lanczos")
    grid = tile_grid(80, 48, 32, 32, 8)
    assert (grid.cols, grid.rows) == ((0, 24, 48), (0, 16))
    tiles = split_tiles(big, grid)
    outs = []
    for k, seed in zip(range(0, 6, 2), (100, 101, 102), strict=True):
        outs += engine.run(replace(job, init_images=tiles[k:k + 2], seed=seed)).images
    expected = combine_tiles(grid, outs)
    assert len(result.images) == 1 and result.images[0].size == (80, 48)
    assert result.images[0].tobytes() == expected.tobytes()
    assert sorted(set(steps)) == [(0, 3), (1, 3), (2, 3)]
    assert script_job_count(job, call) == 3


def test_infotext_and_info_are_a1111s(engine: Engine) -> None:
    """Processed(p, images, seed, initial_info): every image carries the first tile's infotext (tile Size,
    the start seed) with the script's two keys; n_iter upscales start at seed + n."""
    call = parse_script("sd upscale", ["", 8, "Nearest", 2])
    result = run_script(engine, _job(n_iter=2, seed=7), call)
    assert len(result.images) == 2 and result.seeds == [7, 8]
    params = parse_infotext(result.infotexts[0])
    assert params["SD upscale overlap"] == "8" and params["SD upscale upscaler"] == "Nearest"
    assert params["Size-1"] == "32" and params["Seed"] == "7"
    assert result.infotexts[1] == result.infotexts[0]
    keys = list(params)
    assert keys.index("SD upscale overlap") == keys.index("RNG") + 1
    info = result.parameters["a1111_info"]
    assert info["seed"] == 7 and info["all_seeds"] == [8 + 5]  # the last of 6 one-tile batches of upscale 2


def test_missing_args_take_the_ui_defaults_and_bad_ones_are_named() -> None:
    call = parse_script("SD UPSCALE", [])
    assert call.args == SDUpscale(overlap=64, upscaler="None", scale=2.0)
    with pytest.raises(ParamError, match="ESRGAN"):
        parse_script("sd upscale", ["", 64, "ESRGAN_4x", 2])
    with pytest.raises(ParamError, match="'sd upscale', 'loopback'"):
        parse_script("ultimate sd upscale", [])
    with pytest.raises(ParamError, match="at most 4 arguments"):
        parse_script("sd upscale", ["", 64, "None", 2, 5])


def test_none_upscaler_tiles_the_original(engine: Engine) -> None:
    """Upscaler "None": A1111 skips upscaling, the tiles cover the input at its own size."""
    result = run_script(engine, _job(init_images=[_scene(48, 32)]), parse_script("sd upscale", ["", 16, "None", 4]))
    assert result.images[0].size == (48, 32)


def test_refusals_before_any_model_runs(engine: Engine) -> None:
    with pytest.raises(ParamError, match="smaller than one tile"):
        run_script(engine, _job(width=64, height=64), parse_script("sd upscale", ["", 8, "None", 2]))
    with pytest.raises(ParamError, match="mask"):
        run_script(engine, _job(mask=Image.new("L", (40, 24), 255)), parse_script("sd upscale", ["", 8, "Lanczos", 2]))
