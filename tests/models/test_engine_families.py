"""The engine runs every family end to end on checkpoints loaded from LDM single files.

Each loaded model must give the same images as the tiny model whose weights the file holds, built
directly in diffusers (img2img for all families, inpainting for the inpainting ones), and its
infotext must carry the file's name and hash.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retouch import Engine, Img2Img
from retouch.infotext import parse_infotext
from retouch.models.ldm_layout import save_ldm_checkpoint, vae_to_ldm
from retouch.models.loading import load_model
from retouch.testing import tiny_model

from .helpers import ALL_FAMILIES

SIZE = 32
INPAINT_FAMILIES = [name for name in ALL_FAMILIES if "inpaint" in name]


def _scene() -> Image.Image:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([x * 8, y * 8, (x + y) * 4], axis=-1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


def _mask() -> Image.Image:
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    m[8:24, 8:24] = 255
    return Image.fromarray(m, "L")


def _job(**kw: object) -> Img2Img:
    base: dict[str, object] = dict(
        prompt="a red circle", negative_prompt="blurry", init_images=[_scene()], steps=4, width=SIZE,
        height=SIZE, seed=77, sampler_name="Euler", denoising_strength=0.6, cfg_scale=5.0,
    )
    base.update(kw)
    return Img2Img(**base)  # type: ignore[arg-type]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _assert_same_image(got: Image.Image, want: Image.Image) -> None:
    """Identical weights: at most 1 level of rounding difference from float summation order."""
    assert got.size == want.size
    assert np.abs(_pixels(got) - _pixels(want)).max() <= 1


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine-checkpoints")
    paths = {}
    for name in ALL_FAMILIES:
        paths[name] = folder / f"tiny-{name}.safetensors"
        save_ldm_checkpoint(tiny_model(5, name), paths[name])
    return paths


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_img2img_on_a_loaded_checkpoint_matches_the_in_code_model(name, files):
    loaded = load_model(files[name])
    job = _job(image_cfg_scale=1.5 if name == "pix2pix" else None)
    got = Engine(loaded, precision="fp32").run(job)
    want = Engine(tiny_model(5, name), precision="fp32").run(job)
    _assert_same_image(got.images[0], want.images[0])
    assert np.abs(_pixels(got.images[0]) - _pixels(_scene())).mean() > 1  # the model changed the image
    info = parse_infotext(got.infotexts[0])
    assert info["Model"] == f"tiny-{name}"
    assert info["Model hash"] == loaded.hash


@pytest.mark.parametrize("name", INPAINT_FAMILIES)
def test_inpaint_on_a_loaded_checkpoint(name, files):
    loaded = load_model(files[name])
    job = _job(mask=_mask(), mask_blur=0, inpaint_full_res=False, denoising_strength=1.0)
    got = Engine(loaded, precision="fp32").run(job)
    want = Engine(tiny_model(5, name), precision="fp32").run(job)
    _assert_same_image(got.images[0], want.images[0])
    keep = np.asarray(_mask()) == 0
    out, src = _pixels(got.images[0]), _pixels(_scene())
    assert (out[keep] == src[keep]).all()
    assert np.abs(out[~keep] - src[~keep]).mean() > 5
    assert "Conditional mask weight" in parse_infotext(got.infotexts[0])


def test_separate_vae_shows_in_infotext(files, tmp_path):
    from safetensors.torch import save_file

    vae_file = tmp_path / "other-vae.safetensors"
    save_file({k: v.contiguous() for k, v in vae_to_ldm(tiny_model(6, "sd1").vae.state_dict()).items()}, vae_file)
    loaded = load_model(files["sd1"], vae=vae_file)
    info = parse_infotext(Engine(loaded, precision="fp32").run(_job()).infotexts[0])
    assert info["VAE"] == "other-vae.safetensors"
    assert info["VAE hash"] == loaded.vae_hash
