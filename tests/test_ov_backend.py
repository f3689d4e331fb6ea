"""The OpenVINO backend (retouch.ov_backend): choice and errors everywhere; conversion and cache with openvino.

The tests that convert are skipped with a reason when the ``retouch[openvino]`` extra is absent. They
share one cache folder per module (one conversion of each part of the tiny model: about 5-10 s each on
this 2-core machine), then check a second engine reads it back without converting.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from retouch import Engine, Img2Img, ParamError
from retouch.ov_backend import BACKENDS, cache_key, check_backend, default_cache_dir
from retouch.testing import tiny_model

SIZE = 64


def _job(**kw: object) -> Img2Img:
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8))
    fields: dict[str, object] = dict(prompt="a cat", init_images=[image], steps=4, denoising_strength=0.5,
                                     seed=1, width=SIZE, height=SIZE, sampler_name="Euler")
    fields.update(kw)
    return Img2Img(**fields)  # type: ignore[arg-type]


# -- without openvino ------------------------------------------------------------------------------------


def test_unknown_backend_lists_the_allowed_values() -> None:
    assert BACKENDS == ("torch", "openvino")
    assert check_backend("openvino") == "openvino"
    with pytest.raises(ParamError, match=r"backend must be one of torch, openvino; got 'onnx'"):
        Engine(tiny_model(), device="cpu", precision="fp32", backend="onnx")


def test_openvino_not_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sys.modules[name] = None`` makes ``import name`` raise ImportError, as when it is not installed."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ParamError, match=r"pip install 'retouch\[openvino\]'"):
        Engine(tiny_model(), device="cpu", precision="fp32", backend="openvino")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"device": "cuda"}, "backend openvino runs on the CPU; got device cuda"),
     ({"device": "cpu", "compile": True}, r"compile \(torch.compile\) needs backend torch"),
     ({"device": "cpu", "precision": "fp16"}, "precision fp16 is for GPUs")],
)
def test_openvino_refuses_what_it_cannot_run(kwargs: dict[str, object], message: str) -> None:
    """Checked before openvino is imported, so these hold with or without the extra."""
    kwargs = {"precision": "fp32", **kwargs}
    with pytest.raises(ParamError, match=message):
        Engine(tiny_model(), backend="openvino", **kwargs)  # type: ignore[arg-type]


def test_default_cache_dir_order() -> None:
    assert default_cache_dir({"RETOUCH_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x"}) == Path("/c/openvino")
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/retouch/openvino")
    assert default_cache_dir({}) == Path.home() / ".cache" / "retouch" / "openvino"


def test_cache_key_is_canonical() -> None:
    """Key order does not matter; any changed value does. Golden: ``hashlib.sha256(b'{"a":1,"b":[2,"x"]}')``,
    the compact sorted JSON of the dict, computed by hand."""
    a = cache_key({"a": 1, "b": [2, "x"]})
    assert a == cache_key({"b": [2, "x"], "a": 1})
    assert a == "454597f51f0e5988dd7d0864f82e826d91fd43ed815a21bb06cd7181e8547a2f"
    assert a != cache_key({"a": 1, "b": [2, "y"]})


# -- with openvino ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("openvino", reason="the OpenVINO backend needs the extra: pip install 'retouch[openvino]'")
    return tmp_path_factory.mktemp("ov-cache")


@pytest.fixture(scope="module")
def first(ov_cache: Path) -> tuple[Engine, object]:
    """The first OpenVINO engine on an empty cache, with its result on ``_job()``."""
    engine = Engine(tiny_model(), device="cpu", precision="fp32", backend="openvino", ov_cache_dir=ov_cache)
    return engine, engine.run(_job())


def test_first_engine_converts_unet_and_vae_once(first: tuple[Engine, object]) -> None:
    engine, result = first
    assert engine.runtime.ov is not None
    assert (engine.runtime.ov.conversions, engine.runtime.ov.disk_hits) == (3, 0)
    assert result.parameters["backend"] == "openvino"  # type: ignore[attr-defined]
    assert "Backend: openvino" in result.infotexts[0]  # type: ignore[attr-defined]


def test_unet_matches_torch_fp32_at_any_size(first: tuple[Engine, object]) -> None:
    """One graph for every batch, size and text length, aligned or not (module docstring of ov_backend).

    Tolerance 1e-4 absolute on outputs of magnitude about 1: both run fp32, and only the order of the
    sums in convolutions and matmuls differs (about 1e-6 observed); 1e-4 leaves room for other CPUs.
    """
    engine, _ = first
    unet = engine.model.unet
    g = torch.Generator().manual_seed(5)
    for batch, h, w, tokens in ((2, 8, 8, 77), (1, 9, 7, 154), (3, 5, 6, 77)):
        x = torch.randn(batch, 4, h, w, generator=g)
        t = torch.full((batch,), 321.5)
        context = torch.randn(batch, tokens, 32, generator=g)
        with torch.no_grad():
            expected = unet(x, t, encoder_hidden_states=context).sample
        got = engine.runtime.ov.unet(x, t, context, None)  # type: ignore[union-attr]
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_image_matches_torch_fp32(first: tuple[Engine, object]) -> None:
    """At most 2 levels on any pixel: fp32 differences of about 1e-6 can flip the uint8 truncation of a
    pixel (1 level), and 3 sampler steps may carry them a little further; the mean stays below 0.05."""
    _, result = first
    reference = Engine(tiny_model(), device="cpu", precision="fp32").run(_job())
    a = np.asarray(reference.images[0], dtype=np.int16)
    b = np.asarray(result.images[0], dtype=np.int16)  # type: ignore[attr-defined]
    assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.05


def test_second_engine_reads_the_cache_without_converting(first: tuple[Engine, object], ov_cache: Path) -> None:
    _, result = first
    before = {p: p.stat().st_mtime_ns for p in ov_cache.rglob("model.bin")}
    assert len(before) == 3
    engine = Engine(tiny_model(), device="cpu", precision="fp32", backend="openvino", ov_cache_dir=ov_cache)
    again = engine.run(_job())
    assert engine.runtime.ov is not None
    assert (engine.runtime.ov.conversions, engine.runtime.ov.disk_hits) == (0, 3)
    assert {p: p.stat().st_mtime_ns for p in ov_cache.rglob("model.bin")} == before  # not rewritten
    assert again.images[0].tobytes() == result.images[0].tobytes()  # type: ignore[attr-defined]


def test_feature_cache_needs_backend_torch(first: tuple[Engine, object]) -> None:
    engine, _ = first
    with pytest.raises(ParamError, match="feature_cache_interval: .* needs backend torch"):
        engine.run(_job(feature_cache_interval=2))


def _unet_lora(folder: Path, model: object) -> None:
    """A rank-2 kohya LoRA on the UNet's first attn1.to_q only (text encoder untouched)."""
    unet = model.unet  # type: ignore[attr-defined]
    name = next(n for n, _ in unet.named_modules() if n.endswith("attn1.to_q"))
    out_f, in_f = unet.get_submodule(name).weight.shape
    g = torch.Generator().manual_seed(3)
    key = "lora_unet_" + name.replace(".", "_")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({f"{key}.lora_down.weight": torch.randn(2, in_f, generator=g),
               f"{key}.lora_up.weight": torch.randn(out_f, 2, generator=g),
               f"{key}.alpha": torch.tensor(2.0)}, str(folder / "ulora.safetensors"))


def test_lora_set_is_part_of_the_key(ov_cache: Path, tmp_path: Path) -> None:
    """A LoRA job converts the merged UNet once (the VAE is reused), equals torch with the same LoRA,
    and a plain job afterwards reuses the plain UNet's entry."""
    model = tiny_model()
    _unet_lora(tmp_path / "lora", model)
    engine = Engine(model, device="cpu", precision="fp32", backend="openvino", ov_cache_dir=ov_cache,
                    lora_dir=tmp_path / "lora")
    ov = engine.runtime.ov
    assert ov is not None
    lora = engine.run(_job(prompt="a cat <lora:ulora:1>"))
    assert ov.conversions == 1
    torch_lora = Engine(tiny_model(), device="cpu", precision="fp32", lora_dir=tmp_path / "lora").run(
        _job(prompt="a cat <lora:ulora:1>"))
    diff = np.abs(np.asarray(lora.images[0], dtype=np.int16) - np.asarray(torch_lora.images[0], dtype=np.int16))
    assert diff.max() <= 2
    plain = engine.run(_job())
    assert ov.conversions == 1 and plain.images[0].tobytes() != lora.images[0].tobytes()
