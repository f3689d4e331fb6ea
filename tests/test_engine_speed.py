"""Speed options end to end on tiny models: A1111's NGMS / Skip Early CFG / pad conds, and the feature cache.

Expected call counts follow A1111 v1.10.1 ``CFGDenoiser.forward``: Euler at 8 steps, strength 0.5 runs
t_enc + 1 = 5 calls (``total_steps`` = 5); ``skip_early_cond`` = 0.5 skips calls with k/5 <= 0.5, i.e.
k = 0, 1, 2; the infotext keys are written only when an option skipped or padded something.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from retouch import Engine, Img2Img, ParamError
from retouch.feature_cache import FeatureCache, unet_pass
from retouch.infotext import parse_infotext
from retouch.testing import tiny_model

SIZE = 32


def _scene() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


def _job(**kw: Any) -> Img2Img:
    base: dict[str, Any] = dict(prompt="a red circle", negative_prompt="blurry", init_images=[_scene()], steps=8,
                                width=SIZE, height=SIZE, seed=1234, sampler_name="Euler",
                                denoising_strength=0.5, cfg_scale=5.0)
    base.update(kw)
    return Img2Img(**base)


class CountingUNet(torch.nn.Module):
    """Wraps the tiny UNet and records each call's batch size."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        self.rows.append(sample.shape[0])
        return self.inner(sample, *args, **kwargs)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(tiny_model(seed=0), precision="fp32")


def _rows(engine: Engine, job: Img2Img) -> tuple[list[int], dict[str, str]]:
    inner = engine.runtime._unet
    counting = CountingUNet(inner)
    engine.runtime._unet = counting
    try:
        result = engine.run(job)
    finally:
        engine.runtime._unet = inner
    return counting.rows, parse_infotext(result.infotexts[0])


def test_skip_early_cond_skips_the_first_calls_and_is_recorded(engine: Engine) -> None:
    rows, info = _rows(engine, _job(skip_early_cond=0.5))
    assert rows == [1, 1, 1, 2, 2]
    assert info["Skip Early CFG"] == "0.5" and "NGMS" not in info


def test_ngms_skips_odd_calls_below_sigma_and_is_recorded(engine: Engine) -> None:
    """s_min_uncond = 100 (above every σ): the odd calls 1 and 3 skip; with all steps, every call."""
    rows, info = _rows(engine, _job(s_min_uncond=100.0))
    assert rows == [2, 1, 2, 1, 2]
    assert info["NGMS"] == "100.0" and "NGMS all steps" not in info
    rows, info = _rows(engine, _job(s_min_uncond=100.0, s_min_uncond_all=True))
    assert rows == [1] * 5 and info["NGMS all steps"] == "True"


def test_ngms_below_every_sigma_writes_nothing(engine: Engine) -> None:
    rows, info = _rows(engine, _job(s_min_uncond=1e-6))
    assert rows == [2] * 5 and "NGMS" not in info


def test_pad_conds_joins_cond_and_uncond_of_different_lengths(engine: Engine) -> None:
    """A 2-chunk prompt against a 1-chunk negative: 2 UNet calls per step unpadded, 1 with either padding."""
    long_prompt = " ".join(["red"] * 80)
    rows, info = _rows(engine, _job(prompt=long_prompt))
    assert rows == [1, 1] * 5 and "Pad conds" not in info
    rows, info = _rows(engine, _job(prompt=long_prompt, pad_cond_uncond=True))
    assert rows == [2] * 5 and info["Pad conds"] == "True"
    rows, info = _rows(engine, _job(prompt=long_prompt, pad_cond_uncond=True, pad_cond_uncond_v0=True))
    assert rows == [2] * 5 and info["Pad conds v0"] == "True" and "Pad conds" not in info


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ParamError, match="skip_early_cond"):
        _job(skip_early_cond=1.5)
    with pytest.raises(ParamError, match="feature_cache_interval"):
        _job(feature_cache_interval=-1)


@pytest.mark.parametrize("family", ["sd1", "sdxl", "sd1-inpaint"])
def test_decomposed_unet_pass_equals_the_unet_bit_for_bit(family: str) -> None:
    """``unet_pass`` with no cached feature runs diffusers' forward sequence: the same bits, odd sizes too."""
    unet = tiny_model(0, family).unet
    cfg = unet.config
    gen = torch.Generator().manual_seed(0)
    for h, w in ((16, 16), (13, 11)):
        x = torch.randn(2, cfg.in_channels, h, w, generator=gen)
        t = torch.tensor([500.0, 321.5])
        ctx = torch.randn(2, 77, cfg.cross_attention_dim, generator=gen)
        added = None
        if cfg.addition_embed_type == "text_time":
            added = {"text_embeds": torch.randn(2, 32, generator=gen), "time_ids": torch.randn(2, 6, generator=gen)}
        with torch.no_grad():
            ref = unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample
            out, deep = unet_pass(unet, x, t, ctx, added, depth=1)
            again, _ = unet_pass(unet, x, t, ctx, added, depth=1, deep=deep)
        assert torch.equal(out, ref) and torch.equal(again, ref)  # the shallow pass on its own deep feature


def test_feature_cache_runs_full_every_interval_per_shape() -> None:
    unet = tiny_model(0).unet
    cache = FeatureCache(unet, interval=3, depth=1)
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([10.0, 10.0]), torch.randn(2, 77, 32)
    with torch.no_grad():
        for _ in range(5):
            cache(x, t, ctx)
        cache(x[:1], t[:1], ctx[:1])  # another shape: its own first (full) call
    assert (cache.full_calls, cache.cached_calls) == (3, 3)
    with pytest.raises(ParamError, match=r"feature_cache_depth must be in \[1, 1\]"):
        FeatureCache(unet, interval=3, depth=2)


def test_feature_cache_off_is_the_exact_path_and_on_is_deterministic(engine: Engine) -> None:
    exact = engine.run(_job()).images[0]
    off = engine.run(_job(feature_cache_interval=1, feature_cache_depth=1)).images[0]
    assert off.tobytes() == exact.tobytes()
    on = engine.run(_job(feature_cache_interval=3))
    again = engine.run(_job(feature_cache_interval=3)).images[0]
    assert on.images[0].size == exact.size and on.images[0].tobytes() == again.tobytes()
    assert on.images[0].tobytes() != exact.tobytes()
    info = parse_infotext(on.infotexts[0])
    assert info["Feature cache interval"] == "3" and info["Feature cache depth"] == "1"


@pytest.mark.parametrize("family", ["sdxl", "sd1-inpaint"])
def test_feature_cache_runs_for_other_families(family: str) -> None:
    eng = Engine(tiny_model(0, family), precision="fp32")
    kw: dict[str, Any] = {"mask": Image.new("L", (SIZE, SIZE), 255)} if family == "sd1-inpaint" else {}
    a = eng.run(_job(feature_cache_interval=2, **kw)).images[0]
    b = eng.run(_job(feature_cache_interval=2, **kw)).images[0]
    assert a.size == (SIZE, SIZE) and a.tobytes() == b.tobytes()
