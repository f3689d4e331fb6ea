"""The fast preset (retouch.preset): the pure selection per device, the engine's use of it, the infotext."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retouch import Engine, Img2Img
from retouch.infotext import parse_infotext
from retouch.params import ParamError
from retouch.preset import DeviceCaps, Preset, select_preset
from retouch.testing import tiny_model


def test_select_fast_on_a_cpu_with_native_bf16() -> None:
    assert select_preset("fast", DeviceCaps("cpu", native_bf16=True)) == Preset("fast", "bf16", 2, 2, "torch", 1.0, 0.5)


def test_select_fast_on_a_cpu_without_native_bf16() -> None:
    """The AVX2 host emulates bf16 about 100x slower than fp32: the preset keeps fp32 there."""
    assert select_preset("fast", DeviceCaps("cpu", native_bf16=False)) == Preset("fast", "fp32", 2, 2, "torch", 1.0, 0.5)


def test_select_fast_elsewhere_and_unlisted_backends() -> None:
    assert select_preset("fast", DeviceCaps("cuda")).precision == "fp16"
    assert select_preset("fast", DeviceCaps("mps")).precision == "fp32"
    # a backend the device offers but FAST_BACKENDS does not list is not chosen
    assert select_preset("fast", DeviceCaps("cpu", backends=("openvino", "torch"))).backend == "torch"


def test_no_preset_and_unknown_preset() -> None:
    assert select_preset(None, DeviceCaps("cpu")) is None
    with pytest.raises(ParamError, match=r"preset must be one of fast \(or none\); got 'turbo'"):
        select_preset("turbo", DeviceCaps("cpu"))
    with pytest.raises(ParamError, match="preset must be one of fast"):
        Engine(tiny_model(seed=0), precision="fp32", preset="turbo")


def _job(**kw: object) -> Img2Img:
    pixels = np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return Img2Img(init_images=(Image.fromarray(pixels),), prompt="a hat", steps=4, denoising_strength=1.0,
                   seed=5, width=32, height=32, sampler_name="Euler", **kw)  # type: ignore[arg-type]


def _bytes(image: Image.Image) -> bytes:
    return np.asarray(image).tobytes()


def test_preset_off_is_the_exact_path_byte_for_byte() -> None:
    plain = Engine(tiny_model(seed=0), precision="fp32").run(_job())
    none = Engine(tiny_model(seed=0), precision="fp32", preset=None).run(_job())
    assert _bytes(plain.images[0]) == _bytes(none.images[0]) and plain.infotexts == none.infotexts
    assert "Preset" not in plain.infotexts[0] and "Feature cache" not in plain.infotexts[0]


def test_preset_fast_records_its_parts_and_equals_them_given_by_hand() -> None:
    """Explicit fp32 wins over the preset's precision; the preset's NGMS 1.0, token merging 0.5 and feature
    cache 2/2 are what the job gets, the depth lowered to the tiny UNet's maximum of 1 (2 down blocks) (4
    Euler steps from sigma ~14.6: the last steps are below sigma 1, so NGMS takes effect and is written;
    token merging is written as A1111 writes it, whatever the model)."""
    fast = Engine(tiny_model(seed=0), precision="fp32", preset="fast").run(_job())
    info = parse_infotext(fast.infotexts[0])
    assert (info["Preset"], info["Precision"]) == ("fast", "fp32")
    assert (info["Feature cache interval"], info["Feature cache depth"]) == ("2", "1")
    assert (info["NGMS"], info["Token merging ratio"]) == ("1.0", "0.5")
    by_hand = Engine(tiny_model(seed=0), precision="fp32").run(
        _job(feature_cache_interval=2, feature_cache_depth=1, s_min_uncond=1.0, token_merging_ratio=0.5))
    assert _bytes(fast.images[0]) == _bytes(by_hand.images[0])
    exact = Engine(tiny_model(seed=0), precision="fp32").run(_job())
    assert _bytes(fast.images[0]) != _bytes(exact.images[0])  # the preset did change the result
    own = Engine(tiny_model(seed=0), precision="fp32", preset="fast").run(_job(feature_cache_interval=3))
    assert parse_infotext(own.infotexts[0])["Feature cache interval"] == "3"  # the job's own cache is kept
    mine = Engine(tiny_model(seed=0), precision="fp32", preset="fast").run(_job(s_min_uncond=0.5))
    assert parse_infotext(mine.infotexts[0])["NGMS"] == "0.5"
