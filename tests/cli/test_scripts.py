"""``retouch upscale``, ``retouch loopback`` and ``--style`` in-process on the tiny model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from retouch import Engine, Img2Img
from retouch.formats.png import read_infotext
from retouch.infotext import parse_infotext
from retouch.recipes import Hooks, parse_script, run_script

from .conftest import Run, noise_image

FAST = ["--steps", "2", "--sampler", "Euler", "--seed", "5"]


def test_upscale_saves_the_combined_image_as_the_recipe_makes_it(
    tmp_path: Path, cli: Callable[..., Run], tiny: object
) -> None:
    """40x24 x2 Lanczos -> 80x48 in 32x32 tiles with overlap 8 (6 tiles); the saved PNG equals the
    recipe's image for the same job and carries A1111's SD upscale infotext keys."""
    src = noise_image(tmp_path / "in.png", (40, 24))
    out = tmp_path / "out"
    run = cli("upscale", src, "--scale", "2", "--overlap", "8", "--size", "32x32", *FAST, "-p", "a cat", "-o", out)
    assert run.code == 0, run.err
    assert [p.name for p in out.iterdir()] == ["00001-5.png"]
    saved = Image.open(out / "00001-5.png")
    assert saved.size == (80, 48)
    params = parse_infotext(read_infotext(out / "00001-5.png") or "")
    assert params["SD upscale overlap"] == "8" and params["SD upscale upscaler"] == "Lanczos"
    job = Img2Img(prompt="a cat", init_images=[Image.open(src).convert("RGB")], width=32, height=32, steps=2,
                  sampler_name="Euler", seed=5, cfg_scale=7, denoising_strength=0.75, seed_resize_from_w=0,
                  seed_resize_from_h=0)
    engine = Engine(tiny, precision="auto")  # type: ignore[arg-type]
    expected = run_script(engine, job, parse_script("sd upscale", ["", 8, "Lanczos", 2.0]), Hooks())
    assert saved.convert("RGB").tobytes() == expected.images[0].tobytes()


def test_upscale_errors_before_the_model_loads(tmp_path: Path, cli: Callable[..., Run], loader: object) -> None:
    src = noise_image(tmp_path / "in.png", (40, 24))
    run = cli("upscale", src, "--upscaler", "ESRGAN_4x", *FAST)
    assert run.code == 2 and "ESRGAN_4x" in run.err and "Lanczos" in run.err
    run = cli("upscale", src, "--scale", "1", *FAST)  # 40x24 is smaller than the 512x512 default tile
    assert run.code == 2 and "smaller than one tile" in run.err
    assert loader.calls == []  # type: ignore[attr-defined]


def test_loopback_saves_grid_then_each_loop(tmp_path: Path, cli: Callable[..., Run]) -> None:
    src = noise_image(tmp_path / "in.png", (32, 32))
    out = tmp_path / "out"
    run = cli("loopback", src, "--loops", "3", "--final-denoise", "0.3", *FAST, "-o", out)
    assert run.code == 0, run.err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00001-5.png", "00002-5.png", "00003-6.png", "00004-7.png"]
    assert Image.open(out / "00001-5.png").size == (96, 32)
    params = parse_infotext(read_infotext(out / "00004-7.png") or "")
    assert params["Final denoising strength"] == "0.3" and params["Seed"] == "5"  # the first loop's infotext
    bad = cli("loopback", src, "--curve", "Steep", *FAST)
    assert bad.code == 2 and "Aggressive, Linear, Lazy" in bad.err


def test_styles_apply_to_the_prompt(tmp_path: Path, cli: Callable[..., Run]) -> None:
    styles = tmp_path / "styles.csv"
    styles.write_text("name,prompt,negative_prompt\nNoir,film noir photo of {prompt},colour\n", encoding="utf-8")
    src = noise_image(tmp_path / "in.png")
    out = tmp_path / "out"
    run = cli("img2img", src, "-p", "a cat", "--style", "Noir", "--styles-file", styles, *FAST, "-o", out)
    assert run.code == 0, run.err
    text = read_infotext(out / "00001-5.png") or ""
    assert text.startswith("film noir photo of a cat\nNegative prompt: colour\n")
    bad = cli("img2img", src, "--style", "Pastel", "--styles-file", styles, *FAST)
    assert bad.code == 2 and "'Pastel' not found; known styles: 'Noir'" in bad.err
    bad = cli("img2img", src, "--style", "Noir", *FAST)
    assert bad.code == 2 and "--styles-file" in bad.err


def test_serve_passes_the_styles_file(
    cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    import retouch.server.app as server_app

    seen: dict[str, object] = {}
    monkeypatch.setattr(server_app, "serve", lambda **kwargs: seen.update(kwargs))
    run = cli("serve", "--styles-file", tmp_path / "styles.csv")
    assert run.code == 0, run.err
    assert seen["styles_file"] == str(tmp_path / "styles.csv")
