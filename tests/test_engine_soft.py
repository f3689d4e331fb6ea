"""Soft inpainting and differential diffusion through the engine (spec soft-masks.md T6, T8, C22).

A :class:`~retouch.testing.ConstantX0UNet` makes every x0 estimate a chosen latent, so the latents are
analytic; the tiny random VAE only decodes them. Expected values come from A1111's hooks (§1.3-§1.10)
and the closed formulas of §1.4 and §2.3.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from retouch import Engine, Img2Img
from retouch.imaging import latent_mask_values
from retouch.imaging.soft import soft_composite_mask
from retouch.infotext import parse_infotext
from retouch.params import DifferentialDiffusion, SoftInpainting
from retouch.testing import ConstantX0UNet, tiny_model, with_unet

SIZE, WIDE = 64, 128  # height, width: the mask covers the right quarter, so the left half is far from it


def _image() -> Image.Image:
    y, x = np.mgrid[0:SIZE, 0:WIDE]
    arr = np.stack([x * 2, y * 4, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _mask() -> Image.Image:
    m = np.zeros((SIZE, WIDE), np.uint8)
    m[:, 96:] = 255
    return Image.fromarray(m)


@pytest.fixture(scope="module")
def fake() -> Engine:
    base = tiny_model(seed=0)
    target = torch.full((1, 4, SIZE // 8, WIDE // 8), 0.8)
    return Engine(with_unet(base, ConstantX0UNet(target, base.alphas_cumprod)), device="cpu", precision="fp32")


def _job(**kw: object) -> Img2Img:
    base: dict[str, object] = dict(
        prompt="p", init_images=[_image()], mask=_mask(), width=WIDE, height=SIZE, steps=8, seed=3,
        sampler_name="Euler", inpaint_full_res=False, inpainting_fill=1, mask_blur=4,
        soft_inpainting=SoftInpainting(),
    )
    base.update(kw)
    return Img2Img(**base)  # type: ignore[arg-type]


def test_mask_round_forced_off_only_with_a_mask_t6() -> None:
    """A1111's process(): ``p.mask_round = False`` when the script is on and the job inpaints."""
    assert _job().mask_round is False
    assert _job(mask=None).mask_round is True
    assert _job(soft_inpainting=None).mask_round is True
    assert _job(soft_inpainting=None, differential_diffusion=DifferentialDiffusion()).mask_round is False


def test_final_blend_skipped_and_composite_from_sampler_output_t6(fake: Engine) -> None:
    """The composite mask is computed from the raw sampler output (for Euler: the last blended x0), so no
    final blend happened; a linear final blend would change the partially masked cells' distance."""
    steps: list[torch.Tensor] = []
    job = _job(return_mask=True)
    res = fake.run(job, on_step=lambda s: steps.append(s.denoised.clone()))
    init = fake.runtime.encode([_image()], [3], sample=True)
    nmask_np = latent_mask_values(_blurred_mask(), WIDE // 8, SIZE // 8, False)
    nmask = torch.from_numpy(nmask_np)[None, None].expand_as(init)
    partial = (nmask > 0) & (nmask < 1)
    assert bool(partial.any())
    expected = soft_composite_mask(torch.linalg.vector_norm(steps[-1] - init, dim=1)[0].numpy(), nmask_np,
                                   SoftInpainting(), WIDE, SIZE, None, (WIDE, SIZE))
    assert np.array_equal(np.asarray(res.masks[0].convert("L")), np.asarray(expected))
    linear = steps[-1] * nmask + init * (1 - nmask)
    other = soft_composite_mask(torch.linalg.vector_norm(linear - init, dim=1)[0].numpy(), nmask_np,
                                SoftInpainting(), WIDE, SIZE, None, (WIDE, SIZE))
    assert not np.array_equal(np.asarray(other), np.asarray(expected))


def _blurred_mask() -> Image.Image:
    from retouch.imaging import blur_mask

    return blur_mask(_mask(), 4, 4)


def test_overlay_applied_even_with_overlay_inpaint_off_t6(fake: Engine) -> None:
    """With soft inpainting the composite replaces the overlay and is applied with overlay_inpaint off
    (§1.7): where the composite mask is 0 the output is the original's bytes; without soft inpainting and
    overlay off the decoded image shows everywhere."""
    res = fake.run(_job(overlay_inpaint=False, return_mask=True))
    m = np.asarray(res.masks[0].convert("L"))
    out, orig = np.asarray(res.images[0]), np.asarray(_image())
    assert (m == 0).sum() >= SIZE * 40  # the composite reaches ~45 px left of the mask edge (G3)
    assert np.array_equal(out[m == 0], orig[m == 0])
    plain = np.asarray(fake.run(_job(overlay_inpaint=False, soft_inpainting=None)).images[0])
    assert not np.array_equal(plain[m == 0], orig[m == 0])


def test_infotext_keys_before_mask_blur_c22(fake: Engine) -> None:
    """C22: ..., Denoising strength: 0.75, Soft inpainting enabled: True, <6 keys>, Mask blur: 4, ...
    (Retouch also writes A1111's ``RNG: CPU`` between them, as A1111 does with randn_source CPU)."""
    text = fake.run(_job()).infotexts[0]
    assert ("Denoising strength: 0.75, RNG: CPU, Soft inpainting enabled: True, Soft inpainting schedule bias: 1, "
            "Soft inpainting preservation strength: 0.5, Soft inpainting transition contrast boost: 4, "
            "Soft inpainting mask influence: 0, Soft inpainting difference threshold: 0.5, "
            "Soft inpainting difference contrast: 2, Mask blur: 4, ") in text
    assert "Soft inpainting" not in fake.run(_job(mask=None)).infotexts[0]


def test_blank_only_masked_mask_still_writes_the_keys(fake: Engine) -> None:
    """§1.8: a blank Only-masked mask falls back to img2img but A1111 already wrote the 7 keys."""
    blank = Image.new("L", (WIDE, SIZE), 0)
    res = fake.run(_job(mask=blank, inpaint_full_res=True))
    parsed = parse_infotext(res.infotexts[0])
    assert parsed["Soft inpainting enabled"] == "True" and "Mask blur" not in res.infotexts[0]


def test_differential_diffusion_trajectory_t8(fake: Engine) -> None:
    """T8: regions d = 0 / 0.5 / 1 (no blur, strength 1, 20 Euler steps): d = 0 latents equal init after
    the final blend; d = 1 equals a plain inpaint (x0 = target from the first step); the first call that
    releases d = 0.5 is step index 10 (ComfyUI threshold 0.4735, §2.3)."""
    m = np.zeros((SIZE, WIDE), np.uint8)
    m[:, 16:40] = 128  # 128/255 = 0.502 -> released when the threshold falls to 0.4735
    m[:, 40:] = 255
    job = _job(mask=Image.fromarray(m), mask_blur=0, soft_inpainting=None, steps=20, denoising_strength=1.0,
               differential_diffusion=DifferentialDiffusion())
    steps: list[torch.Tensor] = []
    fake.run(job, on_step=lambda s: steps.append(s.denoised.clone()))
    init = fake.runtime.encode([_image()], [3], sample=True)
    def at_target(s: torch.Tensor, col: int) -> bool:  # the fake UNet's x0 is the target up to fp32 rounding
        return bool(torch.allclose(s[..., col], torch.full_like(s[..., col], 0.8), atol=1e-5))

    half = [at_target(s, 3) for s in steps]
    assert half.index(True) == 10 and all(half[10:]) and not any(half[:10])
    assert all(at_target(s, 7) for s in steps)  # d = 1: the plain-inpaint x0 from the first call
    assert all(torch.equal(s[..., 0], init[..., 0]) for s in steps)  # d = 0: pinned every call


@pytest.mark.parametrize("only_masked", [False, True])
def test_keep_unmasked_exact_t9(fake: Engine, only_masked: bool) -> None:
    """T9: soft inpainting + keep_unmasked_exact + exact paste: every pixel where the blurred mask is 0
    is the original's byte (max abs diff 0); without the option soft inpainting's composite reaches
    beyond the blurred mask (G3), so some of those pixels change."""
    support = np.asarray(_blurred_mask()) == 0
    orig = np.asarray(_image())
    kw = dict(inpaint_full_res=only_masked, inpaint_full_res_padding=8)
    exact = np.asarray(fake.run(_job(keep_unmasked_exact=True, paste_back="exact", **kw)).images[0])
    assert np.array_equal(exact[support], orig[support])
    loose = np.asarray(fake.run(_job(**kw)).images[0])
    assert not np.array_equal(loose[support], orig[support])


def test_seam_options_in_infotext_and_read_back(fake: Engine) -> None:
    """Retouch-only keys after A1111's, only when not default; soft_mask_fields reads them back."""
    from retouch.info import soft_mask_fields

    job = _job(soft_inpainting=None, latent_mask_mode="cover+1", paste_back="exact", keep_unmasked_exact=True,
               seam_correction="lowfreq", seam_radius=16)
    text = fake.run(job).infotexts[0]
    assert ("Masked content: original" not in text and "Latent mask mode: cover+1, Paste back: exact, "
            "Keep unmasked exact: True, Seam correction: lowfreq 16, Version") in text
    fields = soft_mask_fields(parse_infotext(text))
    assert fields == {"latent_mask_mode": "cover+1", "paste_back": "exact", "keep_unmasked_exact": True,
                      "seam_correction": "lowfreq", "seam_radius": 16}
    dd = fake.run(_job(soft_inpainting=None, differential_diffusion=DifferentialDiffusion(0.5, "step"))).infotexts[0]
    assert "Differential diffusion: 0.5, Differential thresholds: step, Version" in dd
    assert soft_mask_fields(parse_infotext(dd))["differential_diffusion"] == DifferentialDiffusion(0.5, "step")
