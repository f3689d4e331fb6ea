"""The VAE posterior cache (issue #17 item 4): repeated jobs skip the encoder, with identical bytes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from retouch import Engine, Img2Img, MaskedContent, ParamError, ResizeMode
from retouch.models.bundle import ModelBundle
from retouch.testing import tiny_model

SIZE = 32


class CountingVAE(torch.nn.Module):
    """The bundle's VAE behind a counter of ``encode`` calls (a wrapper passed in, nothing patched)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.inner = vae
        self.encodes = 0

    def encode(self, x: torch.Tensor) -> Any:
        self.encodes += 1
        return self.inner.encode(x)

    def decode(self, z: torch.Tensor) -> Any:
        return self.inner.decode(z)


def _counted(family: str = "sd1") -> tuple[ModelBundle, CountingVAE]:
    bundle = tiny_model(seed=0, family=family)
    vae = CountingVAE(bundle.vae)
    return dataclasses.replace(bundle, vae=vae), vae


def _scene(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


def _mask(lo: int = 8, hi: int = 24) -> Image.Image:
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    m[lo:hi, lo:hi] = 255
    return Image.fromarray(m, "L")


def _job(**kw: Any) -> Img2Img:
    base: dict[str, Any] = dict(prompt="a red circle", init_images=[_scene()], steps=3, width=SIZE, height=SIZE,
                                seed=1234, sampler_name="Euler", denoising_strength=0.6, cfg_scale=5.0)
    base.update(kw)
    return Img2Img(**base)


def _bytes(images: list[Image.Image]) -> list[bytes]:
    return [im.tobytes() for im in images]


@pytest.mark.parametrize("family", ["sd1", "sd1-inpaint", "pix2pix"])
def test_second_identical_job_skips_the_encoder_with_identical_images(family: str) -> None:
    job = _job(mask=_mask()) if family != "pix2pix" else _job()
    bundle, vae = _counted(family)
    engine = Engine(bundle, precision="fp32")
    first = engine.run(job)
    computed = vae.encodes
    assert computed == first.parameters["vae_encode_computed"] >= 1
    second = engine.run(job)
    assert vae.encodes == computed  # not one more encoder call
    assert second.parameters["vae_encode_computed"] == 0
    assert second.parameters["vae_encode_cached"] == first.parameters["vae_encode_cached"] + computed
    off_bundle, off_vae = _counted(family)
    off = Engine(off_bundle, precision="fp32", vae_cache_size=0)
    reference = [off.run(job), off.run(job)]
    assert off_vae.encodes == 2 * first.parameters["vae_encode_computed"] + 2 * first.parameters["vae_encode_cached"]
    assert _bytes(first.images) == _bytes(second.images) == _bytes(reference[0].images) == _bytes(reference[1].images)
    assert reference[1].parameters["vae_encode_cached"] == 0


def test_pix2pix_encodes_its_input_once_per_job() -> None:
    """The init latent (posterior sample) and the image conditioning (its mode) share one posterior."""
    bundle, vae = _counted("pix2pix")
    result = Engine(bundle, precision="fp32").run(_job())
    assert vae.encodes == 1 and result.parameters["vae_encode_cached"] == 1


def _one_pixel_changed(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image).copy()
    pixels[SIZE - 1, SIZE - 1, 0] ^= 1  # outside the mask, so no fill overwrites it
    return Image.fromarray(pixels)


CHANGES: dict[str, dict[str, Any]] = {
    "a pixel": dict(init_images=[_one_pixel_changed(_scene())]),
    "the mask": dict(mask=_mask(8, 23)),
    "the size": dict(width=SIZE + 8),
    "the resize mode": dict(resize_mode=ResizeMode.RESIZE_AND_FILL, width=SIZE + 8),
    "the fill": dict(inpainting_fill=MaskedContent.ORIGINAL),
    "Only masked": dict(inpaint_full_res=True, inpaint_full_res_padding=0),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_changing_one_part_of_the_input_misses(change: str) -> None:
    base = dict(mask=_mask(), mask_blur=0, inpainting_fill=MaskedContent.FILL, inpaint_full_res=False)
    bundle, vae = _counted()
    engine = Engine(bundle, precision="fp32")
    engine.run(_job(**base))
    before = vae.encodes
    changed = engine.run(_job(**{**base, **CHANGES[change]}))
    assert vae.encodes == before + 1 and changed.parameters["vae_encode_cached"] == 0


def test_a_new_seed_reuses_the_posterior_but_draws_a_new_sample() -> None:
    """The seed is not part of the key: it only drives the sample drawn after the lookup."""
    bundle, vae = _counted()
    engine = Engine(bundle, precision="fp32")
    engine.run(_job(seed=1))
    hit = engine.run(_job(seed=2))
    assert vae.encodes == 1 and hit.parameters["vae_encode_cached"] == 1
    fresh = Engine(tiny_model(seed=0), precision="fp32", vae_cache_size=0).run(_job(seed=2))
    assert _bytes(hit.images) == _bytes(fresh.images)
    a = engine.runtime.encode([_scene()], [1])
    b = engine.runtime.encode([_scene()], [2])
    assert not torch.equal(a, b)


def test_batch_slots_with_one_image_encode_once() -> None:
    bundle, vae = _counted()
    engine = Engine(bundle, precision="fp32")
    batch = engine.run(_job(batch_size=3))
    assert vae.encodes == 1 and batch.parameters["vae_encode_cached"] == 2
    fresh = Engine(tiny_model(seed=0), precision="fp32", vae_cache_size=0).run(_job(batch_size=3))
    assert _bytes(batch.images) == _bytes(fresh.images)


def test_the_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    bundle, vae = _counted()
    engine = Engine(bundle, precision="fp32", vae_cache_size=2)
    scenes = [_scene(k) for k in range(3)]
    for k in (0, 1, 0, 2):  # 0 is used again before 2 arrives, so 1 is dropped
        engine.runtime.encode([scenes[k]], [0])
    assert len(engine.runtime.vae_cache) == 2 and vae.encodes == 3
    engine.runtime.encode([scenes[0]], [0])
    engine.runtime.encode([scenes[2]], [0])
    assert vae.encodes == 3
    engine.runtime.encode([scenes[1]], [0])
    assert vae.encodes == 4


def test_the_cached_posterior_is_never_handed_out() -> None:
    engine = Engine(tiny_model(seed=0), precision="fp32")
    mode = engine.runtime.encode([_scene()], [0], sample=False, scale=False)
    with torch.inference_mode():
        mode.add_(1.0)
    again = engine.runtime.encode([_scene()], [0], sample=False, scale=False)
    assert not torch.equal(mode, again)


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ParamError, match="cache size"):
        Engine(tiny_model(seed=0), precision="fp32", vae_cache_size=-1)


class RecordingVAE(CountingVAE):
    """Also records the latent shape of every ``decode`` call."""

    def __init__(self, vae: Any) -> None:
        super().__init__(vae)
        self.decoded: list[tuple[int, ...]] = []

    def decode(self, z: torch.Tensor) -> Any:
        self.decoded.append(tuple(z.shape))
        return self.inner.decode(z)


def test_only_masked_decodes_the_crop_alone_and_steps_decode_nothing() -> None:
    """A 96x96 image with a small mask, processed at 32x32: one (1, 4, 4, 4) decode per image, no more."""
    bundle = tiny_model(seed=0)
    vae = RecordingVAE(bundle.vae)
    engine = Engine(dataclasses.replace(bundle, vae=vae), precision="fp32")
    big = Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    mask = Image.new("L", (96, 96), 0)
    mask.paste(255, (40, 40, 56, 56))
    steps: list[int] = []
    result = engine.run(_job(init_images=[big], mask=mask, inpaint_full_res=True, inpaint_full_res_padding=0,
                             batch_size=2), on_step=lambda info: steps.append(info.step))
    assert steps and result.images[0].size == (96, 96)
    assert vae.decoded == [(1, 4, SIZE // 8, SIZE // 8)] * 2  # the crop, once per image; no preview decodes
    engine.preview(torch.zeros(1, 4, SIZE // 8, SIZE // 8))  # a caller that asks gets one
    assert len(vae.decoded) == 3
