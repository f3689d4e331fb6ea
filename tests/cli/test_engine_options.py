"""``--vae-cache``, ``--max-memory`` and ``--fast`` on the generating commands and ``serve``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from retouch.cli.run import Session
from retouch.formats.png import read_infotext
from retouch.infotext import parse_infotext
from retouch.testing import tiny_model

from .conftest import Loader, Run, noise_image


def test_bad_values_fail_before_the_model_loads(tmp_path: Path, cli: Callable[..., Run], loader: Loader) -> None:
    image = noise_image(tmp_path / "in.png")
    run = cli("img2img", image, "--vae-cache", "-1")
    assert run.code == 2 and "--vae-cache must be a whole number >= 0 (0 turns the VAE cache off); got -1" in run.err
    run = cli("img2img", image, "--max-memory", "6X")
    assert run.code == 2 and "--max-memory: max_memory must be" in run.err and "6G, 512M" in run.err
    run = cli("serve", "--vae-cache", "-2")
    assert run.code == 2 and "--vae-cache must be" in run.err
    run = cli("serve", "--max-memory", "lots")
    assert run.code == 2 and "--max-memory" in run.err
    assert loader.calls == []


def test_session_passes_the_options_to_the_engine() -> None:
    session = Session(lambda model, vae: tiny_model(seed=0))
    engine = session.engine("demo", None, None, "fp32", vae_cache_size=0, max_memory="1G", preset=None)
    assert engine.runtime.vae_cache.size == 0 and engine.runtime.max_memory == 2**30
    again = session.engine("demo", None, None, "fp32", vae_cache_size=0, max_memory="1G", preset=None)
    assert again is engine
    other = session.engine("demo", None, None, "fp32", vae_cache_size=4, max_memory="1G", preset=None)
    assert other is not engine and other.runtime.vae_cache.size == 4


def test_fast_is_named_in_the_infotext_and_recalled(tmp_path: Path, cli: Callable[..., Run]) -> None:
    image = noise_image(tmp_path / "in.png")
    out = tmp_path / "out"
    run = cli("img2img", image, "--steps", "2", "--seed", "3", "--precision", "fp32", "--fast", "--vae-cache", "0",
              "--max-memory", "64G", "-o", out)
    assert run.code == 0, run.err
    first = out / "00001-3.png"
    info = parse_infotext(read_infotext(first) or "")
    assert (info["Preset"], info["Precision"], info["Token merging ratio"]) == ("fast", "fp32", "0.5")
    again = cli("img2img", image, "--from-infotext", first, "-o", out)
    assert again.code == 0, again.err
    assert (out / "00002-3.png").read_bytes() == first.read_bytes()
