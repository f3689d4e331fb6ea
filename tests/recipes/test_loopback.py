"""The Loopback recipe on the tiny model, against A1111's script (v1.10.1 scripts/loopback.py)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from retouch import Engine, Img2Img, MaskedContent, ParamError
from retouch.infotext import parse_infotext
from retouch.recipes import Hooks, Loopback, loop_strengths, parse_script, run_script
from retouch.testing import tiny_model


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(tiny_model(seed=0), precision="fp32")


def _scene() -> Image.Image:
    rng = np.random.default_rng(9)
    return Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))


def _job(**kw: object) -> Img2Img:
    base: dict[str, object] = dict(prompt="a dog", init_images=[_scene()], steps=4, width=32, height=32,
                                   seed=50, sampler_name="Euler", denoising_strength=0.8)
    base.update(kw)
    return Img2Img(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        # d0 + (final - d0) * curve(i / 3), d0 = 0.8, final = 0.2
        ("Linear", [0.8, 0.8 - 0.6 / 3, 0.8 - 0.6 * 2 / 3, 0.2]),
        ("Aggressive", [0.8] + [0.8 - 0.6 * math.sin(i / 3 * math.pi / 2) for i in (1, 2, 3)]),
        ("Lazy", [0.8] + [0.8 - 0.6 * (1 - math.cos(i / 3 * math.pi / 2)) for i in (1, 2, 3)]),
    ],
)
def test_each_loops_denoising_strength(curve: str, expected: list[float]) -> None:
    got = loop_strengths(Loopback(loops=4, final_denoising_strength=0.2, denoising_curve=curve), 0.8)
    assert got == pytest.approx(expected, abs=1e-12)
    assert loop_strengths(Loopback(loops=1, final_denoising_strength=0.2), 0.8) == [0.8]


def test_loops_feed_each_other_with_a1111s_seeds_and_strengths(engine: Engine) -> None:
    """3 loops, final 0.4, Linear: strengths 0.8, 0.6, 0.4; seeds 50, 51, 52; each loop's input is the
    previous output, masked content "original" after the first. One batch: a one-row grid of the 3
    images first (A1111 return_grid), then the images; every infotext is the first loop's plus the
    script's keys."""
    job = _job(mask=Image.new("L", (32, 32), 255), inpainting_fill=MaskedContent.LATENT_NOTHING, mask_blur=0)
    call = parse_script("Loopback", [3, 0.4, "Linear", "None"])
    seen: list[tuple[int, int]] = []
    result = run_script(engine, job, call, Hooks(on_step=lambda s: seen.append((s.job_no, s.job_count))))
    init, fill, expected = [_scene()], MaskedContent.LATENT_NOTHING, []
    for seed, strength in zip((50, 51, 52), (0.8, 0.6, 0.4), strict=True):
        out = engine.run(replace(job, init_images=init, seed=seed, denoising_strength=strength,
                                 inpainting_fill=fill)).images[0]
        expected.append(out)
        init, fill = [out], MaskedContent.ORIGINAL
    assert len(result.images) == 4 and result.images[0].size == (96, 32)
    assert [im.tobytes() for im in result.images[1:]] == [im.tobytes() for im in expected]
    assert result.images[0].crop((64, 0, 96, 32)).tobytes() == expected[2].tobytes()
    assert result.seeds[1:] == [50, 51, 52]
    params = parse_infotext(result.infotexts[0])
    assert params["Final denoising strength"] == "0.4" and params["Denoising curve"] == "Linear"
    assert params["Denoising strength"] == "0.8" and params["Seed"] == "50"
    assert sorted(set(seen)) == [(0, 3), (1, 3), (2, 3)]
    # after the last loop A1111 sets p.denoising_strength = calculate(loops): 0.8 - 0.4 * 3/2
    assert result.parameters["a1111_info"]["denoising_strength"] == pytest.approx(0.2)


def test_several_batches_keep_each_batchs_last_image(engine: Engine) -> None:
    """n_iter 2, 2 loops: batch 2 restarts from the original image and strength, seeds run on (52, 53)."""
    job = _job(n_iter=2)
    result = run_script(engine, job, parse_script("loopback", [2, 0.5]))
    assert len(result.images) == 3 and result.seeds[1:] == [51, 53]
    second = engine.run(replace(job, n_iter=1, seed=52)).images[0]
    last = engine.run(replace(job, n_iter=1, seed=53, init_images=[second], denoising_strength=0.5)).images[0]
    assert result.images[2].tobytes() == last.tobytes()


def test_without_return_grid_only_the_images(engine: Engine) -> None:
    result = run_script(engine, _job(), parse_script("loopback", [2, 0.5]), return_grid=False)
    assert len(result.images) == 2 and result.images[0].size == (32, 32)


def test_skip_abandons_the_current_batch(engine: Engine) -> None:
    """A1111 breaks out of the loops when state.skipped is set after process_images."""
    calls = {"n": 0}

    def skip() -> bool:
        calls["n"] += 1
        return calls["n"] == 1  # fires during the first loop

    result = run_script(engine, _job(), parse_script("loopback", [3, 0.5]), Hooks(should_skip=skip),
                        return_grid=False)
    assert result.images == []


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ParamError, match="CLIP and DeepBooru"):
        parse_script("loopback", [4, 0.5, "Linear", "CLIP"])
    with pytest.raises(ParamError, match="Aggressive, Linear, Lazy"):
        parse_script("loopback", [4, 0.5, "Steep"])
    with pytest.raises(ParamError, match="1 to 32"):
        parse_script("loopback", [0])


def test_colour_correction_matches_every_loop_to_the_original(engine: Engine) -> None:
    """Loopback presets ``p.color_corrections`` from the original init image; A1111's init() then keeps
    it for every loop, so loop 2 is corrected towards the original, not towards loop 1's output."""
    job = _job(img2img_color_correction=True)
    result = run_script(engine, job, parse_script("loopback", [2, 0.5]), return_grid=False)
    first = engine.run(replace(job, color_correction_image=_scene())).images[0]
    second = engine.run(replace(job, seed=51, init_images=[first], denoising_strength=0.5,
                                color_correction_image=_scene())).images[0]
    assert result.images[1].tobytes() == second.tobytes()
    own = engine.run(replace(job, seed=51, init_images=[first], denoising_strength=0.5)).images[0]
    assert own.tobytes() != second.tobytes()
