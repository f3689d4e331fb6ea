"""The engine end to end on tiny random models: reproducibility, batches, masks, stops, infotext."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from retouch import Engine, Img2Img, MaskedContent, ParamError, ResizeMode
from retouch.infotext import parse_infotext
from retouch.testing import tiny_model

SIZE = 32


def _scene(seed: int = 0, size: int = SIZE) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.zeros((size, size, 3), dtype=np.uint8)
    base[..., 0] = np.linspace(0, 255, size, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(255, 0, size, dtype=np.uint8)[:, None]
    base[..., 2] = rng.integers(0, 255, (size, size), dtype=np.uint8)
    return Image.fromarray(base)


def _square_mask(size: int = SIZE, lo: int = 8, hi: int = 24) -> Image.Image:
    m = np.zeros((size, size), dtype=np.uint8)
    m[lo:hi, lo:hi] = 255
    return Image.fromarray(m, "L")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(tiny_model(seed=0), precision="fp32")


def _job(**kw: object) -> Img2Img:
    base: dict[str, object] = dict(
        prompt="a red circle", init_images=[_scene()], steps=4, width=SIZE, height=SIZE, seed=1234,
        sampler_name="Euler a", denoising_strength=0.75, cfg_scale=5.0,
    )
    base.update(kw)
    return Img2Img(**base)  # type: ignore[arg-type]


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def test_same_seed_gives_identical_bytes(engine: Engine) -> None:
    a = engine.run(_job()).images[0]
    b = engine.run(_job()).images[0]
    assert a.tobytes() == b.tobytes()
    c = engine.run(_job(seed=1235)).images[0]
    assert a.tobytes() != c.tobytes()


def test_batch_of_two_equals_two_single_runs(engine: Engine) -> None:
    batch = engine.run(_job(batch_size=2))
    assert batch.seeds == [1234, 1235]
    for k, seed in enumerate((1234, 1235)):
        single = engine.run(_job(seed=seed)).images[0]
        assert np.abs(_arr(batch.images[k]) - _arr(single)).max() <= 1


def test_n_iter_gives_consecutive_seeds_and_infotexts(engine: Engine) -> None:
    res = engine.run(_job(n_iter=2, batch_size=2))
    assert res.seeds == [1234, 1235, 1236, 1237]
    assert len(res.images) == len(res.infotexts) == 4
    assert [parse_infotext(t)["Seed"] for t in res.infotexts] == ["1234", "1235", "1236", "1237"]


def test_subseed_strength_zero_equals_no_subseed(engine: Engine) -> None:
    plain = engine.run(_job(subseed=-1)).images[0]
    with_sub = engine.run(_job(subseed=99, subseed_strength=0.0)).images[0]
    varied = engine.run(_job(subseed=99, subseed_strength=0.5)).images[0]
    assert plain.tobytes() == with_sub.tobytes()
    assert plain.tobytes() != varied.tobytes()


def test_strength_near_zero_stays_at_the_init_latent(engine: Engine) -> None:
    job = _job(denoising_strength=0.01, steps=20, sampler_name="Euler")
    out = _arr(engine.run(job).images[0])
    init = engine.runtime.encode([_scene()], [1234])
    roundtrip = _arr(engine.runtime.decode(init)[0])
    far = _arr(engine.run(_job(denoising_strength=1.0, steps=20, sampler_name="Euler")).images[0])
    assert np.abs(out - roundtrip).mean() < 0.25 * np.abs(far - roundtrip).mean()


def test_step_counts_follow_the_a1111_table(engine: Engine) -> None:
    steps: list[tuple[int, int, int]] = []
    engine.run(_job(steps=20, denoising_strength=0.75, sampler_name="Euler"),
               on_step=lambda s: steps.append((s.job_no, s.step, s.steps)))
    assert [s[1] for s in steps] == list(range(1, 17)) and {s[2] for s in steps} == {16}
    steps.clear()
    engine.run(_job(steps=20, denoising_strength=0.75, sampler_name="Euler", img2img_fix_steps=True),
               on_step=lambda s: steps.append((s.job_no, s.step, s.steps)))
    assert len(steps) == 20


@pytest.mark.parametrize("area", [False, True])
def test_pixels_outside_a_hard_mask_are_unchanged(engine: Engine, area: bool) -> None:
    job = _job(mask=_square_mask(), mask_blur=0, inpaint_full_res=area, inpainting_fill=MaskedContent.ORIGINAL,
               denoising_strength=1.0)
    out = _arr(engine.run(job).images[0])
    src = _arr(_scene())
    keep = np.asarray(_square_mask()) == 0
    assert out.shape == src.shape
    assert (out[keep] == src[keep]).all()
    assert np.abs(out[~keep] - src[~keep]).mean() > 5  # the masked area was regenerated


def test_only_masked_returns_the_original_size_and_pastes_in_the_box(engine: Engine) -> None:
    big = _scene(size=64)
    mask = _square_mask(size=64, lo=40, hi=52)
    res = engine.run(_job(init_images=[big], mask=mask, mask_blur=0, inpaint_full_res=True,
                          inpaint_full_res_padding=4, return_mask=True, return_mask_composite=True))
    out = res.images[0]
    assert out.size == (64, 64)
    assert len(res.masks) == 1 and len(res.mask_composites) == 1
    changed = np.argwhere(np.abs(_arr(out) - _arr(big)).max(axis=2) > 0)
    assert changed.min() >= 40 and changed.max() < 52
    params = parse_infotext(res.infotexts[0])
    assert params["Inpaint area"] == "Only masked" and params["Masked area padding"] == "4"


def test_blank_mask_in_only_masked_mode_runs_as_img2img(engine: Engine) -> None:
    blank = Image.new("L", (SIZE, SIZE), 0)
    res = engine.run(_job(mask=blank, inpaint_full_res=True))
    plain = engine.run(_job())
    assert res.images[0].tobytes() == plain.images[0].tobytes()
    assert any("blank" in c for c in res.comments)


@pytest.mark.parametrize("fill", list(MaskedContent))
def test_every_masked_content_mode_runs_and_keeps_the_outside(engine: Engine, fill: MaskedContent) -> None:
    res = engine.run(_job(mask=_square_mask(), mask_blur=0, inpainting_fill=fill, inpaint_full_res=False))
    keep = np.asarray(_square_mask()) == 0
    assert (_arr(res.images[0])[keep] == _arr(_scene())[keep]).all()


@pytest.mark.parametrize("mode", list(ResizeMode))
def test_resize_modes_produce_the_processing_size(engine: Engine, mode: ResizeMode) -> None:
    src = _scene(size=48).crop((0, 0, 48, 24))
    res = engine.run(_job(init_images=[src], resize_mode=mode, width=32, height=24))
    assert res.images[0].size == (32, 24)


def test_infotext_parses_back_to_the_job(engine: Engine) -> None:
    job = _job(negative_prompt="blurry, dark", mask=_square_mask(), mask_blur=2, inpaint_full_res=False,
               inpainting_fill=MaskedContent.FILL, subseed=7, subseed_strength=0.25)
    res = engine.run(job)
    p = parse_infotext(res.infotexts[0])
    assert p["Prompt"] == "a red circle" and p["Negative prompt"] == "blurry, dark"
    assert p["Steps"] == "4" and p["Sampler"] == "Euler a" and p["CFG scale"] == "5.0"
    assert p["Seed"] == "1234" and p["Size-1"] == str(SIZE) and p["Denoising strength"] == "0.75"
    assert p["Mask blur"] == "2" and p["Masked content"] == "fill" and p["Variation seed"] == "7"
    assert p["Variation seed strength"] == "0.25" and p["Model"] == engine.model.name
    assert res.images[0].info["parameters"] == res.infotexts[0]


def test_interrupt_returns_partial_images_and_stops_iterations(engine: Engine) -> None:
    seen: list[int] = []
    res = engine.run(_job(n_iter=3, steps=10, denoising_strength=1.0), on_step=lambda s: seen.append(s.step),
                     should_stop=lambda: len(seen) >= 2)
    assert res.interrupted and len(res.images) == 1 and seen == [1, 2]


def test_skip_ends_only_the_current_batch(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    fired: list[bool] = []

    def skip() -> bool:
        if len(seen) == 1 and not fired:
            fired.append(True)
            return True
        return False

    res = engine.run(_job(n_iter=2, steps=3, denoising_strength=1.0),
                     on_step=lambda s: seen.append((s.job_no, s.step)), should_skip=skip)
    assert not res.interrupted and len(res.images) == 2
    assert seen == [(0, 1), (1, 1), (1, 2), (1, 3)]


def test_bad_jobs_fail_before_any_model_runs(engine: Engine) -> None:
    with pytest.raises(ParamError, match="Euler a"):
        engine.run(_job(sampler_name="Eulerr"))
    with pytest.raises(ParamError, match="batch_size"):
        engine.run(_job(init_images=[_scene(), _scene(1)], batch_size=1))
    with pytest.raises(ParamError, match="mask size"):
        engine.run(_job(mask=_square_mask(size=16), inpaint_full_res=True))
    with pytest.raises(ParamError, match="at least one"):
        engine.run(_job(init_images=[]))


@pytest.mark.parametrize("family", ["sd1-inpaint", "pix2pix"])
def test_conditioned_families_run(family: str) -> None:
    eng = Engine(tiny_model(seed=1, family=family), precision="fp32")
    job = _job(mask=_square_mask() if family != "pix2pix" else None, image_cfg_scale=1.5, inpaint_full_res=False)
    a = eng.run(job)
    b = eng.run(job)
    assert a.images[0].tobytes() == b.images[0].tobytes()
    p = parse_infotext(a.infotexts[0])
    assert ("Conditional mask weight" in p) == (family == "sd1-inpaint")
    assert ("Image CFG scale" in p) == (family == "pix2pix")


def test_bf16_stays_close_to_fp32() -> None:
    fp32 = Engine(tiny_model(seed=0), precision="fp32").run(_job()).images[0]
    bf16 = Engine(tiny_model(seed=0), precision="bf16").run(_job()).images[0]
    mse = float(np.mean((_arr(fp32).astype(np.float64) - _arr(bf16)) ** 2))
    psnr = 10 * np.log10(255.0**2 / max(mse, 1e-9))
    assert psnr > 25, psnr
    assert torch.get_default_dtype() == torch.float32


def _zero_unet_engine() -> Engine:
    """A tiny model whose UNet predicts eps = 0, so x0 = x: samplers leave x where the noising put it."""
    model = tiny_model(seed=0)
    with torch.no_grad():
        model.unet.conv_out.weight.zero_()
        model.unet.conv_out.bias.zero_()
    return Engine(model, precision="fp32")


@pytest.mark.parametrize(("multiplier", "extra"), [(1.0, 0.0), (0.5, 0.0), (1.0, 0.3)])
def test_noising_is_init_plus_sigma_start_times_scaled_noise(multiplier: float, extra: float) -> None:
    from retouch.sampling.noise import ImageNoise
    from retouch.sampling.registry import build_sigmas, get_sampler
    from retouch.sampling.schedules import sigma_tail

    eng = _zero_unet_engine()
    job = _job(sampler_name="Euler", steps=10, denoising_strength=0.5, initial_noise_multiplier=multiplier,
               img2img_extra_noise=extra)
    out = eng.run(job).images[0]
    init = eng.runtime.encode([_scene()], [1234])
    eps = ImageNoise([1234], [job.subseed], 0.0, (4, SIZE // 8, SIZE // 8)).first() * multiplier
    sigmas = build_sigmas(get_sampler("Euler"), "Automatic", 10, eng.runtime.model_sigmas)
    start = sigma_tail(sigmas, 5)[0]
    assert start == sigmas[4]  # t_enc = int(0.5 * 10) = 5 -> start index N - t_enc - 1 = 4
    expected = eng.runtime.decode(init + eps * start + eps * extra)[0]
    assert out.tobytes() == expected.tobytes()


def test_every_sampler_runs_end_to_end(engine: Engine) -> None:
    from retouch.sampling.registry import SAMPLERS

    for name in SAMPLERS:
        res = engine.run(_job(sampler_name=name, steps=3, denoising_strength=0.9))
        assert res.images[0].size == (SIZE, SIZE), name
        assert parse_infotext(res.infotexts[0])["Sampler"] == name


def test_sampler_name_with_schedule_suffix_is_split(engine: Engine) -> None:
    res = engine.run(_job(sampler_name="DPM++ 2M Karras", steps=3))
    assert (res.sampler_name, res.scheduler) == ("DPM++ 2M", "Karras")
    assert parse_infotext(res.infotexts[0])["Schedule type"] == "Karras"
    with pytest.raises(ParamError, match="Karras"):
        engine.run(_job(scheduler="Karas"))


def test_latent_mask_drives_the_latent_blend_but_not_the_overlay() -> None:
    eng = _zero_unet_engine()
    # the latent mask covers nothing: the latent stays the clean init latent everywhere
    job = _job(mask=_square_mask(), mask_blur=0, inpaint_full_res=False, inpainting_fill=MaskedContent.ORIGINAL,
               latent_mask=Image.new("L", (SIZE, SIZE), 0), overlay_inpaint=False)
    out = eng.run(job).images[0]
    init = eng.runtime.encode([_scene()], [1234])
    assert out.tobytes() == eng.runtime.decode(init)[0].tobytes()


def test_channels_last_does_not_change_the_result() -> None:
    a = Engine(tiny_model(seed=0), precision="fp32", channels_last=True).run(_job()).images[0]
    b = Engine(tiny_model(seed=0), precision="fp32", channels_last=False).run(_job()).images[0]
    assert np.abs(_arr(a) - _arr(b)).max() <= 1


@pytest.mark.slow
def test_compile_mode_reports_its_warmup_and_matches_eager() -> None:
    eager = Engine(tiny_model(seed=0), precision="fp32").run(_job()).images[0]
    res = Engine(tiny_model(seed=0), precision="fp32", compile=True).run(_job())
    assert res.parameters["compile_warmup_s"] > 0
    assert np.abs(_arr(res.images[0]) - _arr(eager)).max() <= 2


@pytest.mark.parametrize("name", ["DPM adaptive", "Restart", "Euler a", "DPM++ 2M", "LMS", "DDIM"])
def test_s_noise_does_not_reach_samplers_a1111_does_not_give_it(engine: Engine, name: str) -> None:
    """A1111's ``sampler_extra_params`` (sd_samplers_kdiffusion.py) has no ``s_noise`` entry for these
    samplers, so they always run with k-diffusion's default ``s_noise = 1``: a job with
    ``s_noise = 0.93`` must give the same bytes as one with 1 (and no "Sigma noise" infotext key)."""
    # Restart only restarts on schedules of 20 or more sigmas (A1111's restart_list default)
    job = dict(sampler_name=name, steps=24 if name == "Restart" else 4, denoising_strength=0.9)
    plain = engine.run(_job(**job))
    changed = engine.run(_job(**job, s_noise=0.93))
    assert changed.images[0].tobytes() == plain.images[0].tobytes()
    assert "Sigma noise" not in parse_infotext(changed.infotexts[0])


def test_s_noise_reaches_samplers_that_take_it(engine: Engine) -> None:
    """Euler has ``s_noise`` in A1111's ``sampler_extra_params``; with churn on it changes the output."""
    job = dict(sampler_name="Euler", steps=4, denoising_strength=0.9, s_churn=1.0)
    plain = engine.run(_job(**job)).images[0]
    assert engine.run(_job(**job, s_noise=0.5)).images[0].tobytes() != plain.tobytes()


@pytest.mark.parametrize(("steps", "sampler", "expected_run"), [(7, "Euler", 8), (15, "Euler", 16), (10, "DPM2", 11)])
def test_ddim_schedule_tail_is_sliced_with_the_requested_steps(steps: int, sampler: str, expected_run: int) -> None:
    """A1111 slices ``sigmas[steps - t_enc - 1:]`` with the requested ``steps``, even when the "DDIM"
    schedule type has more entries (1000 not a multiple of steps). 7 steps, strength 1: t_enc =
    int(0.999 * 7) = 6, the grid range(1, 1000, 142) has 8 sigmas plus 0, the slice starts at index
    7 - 6 - 1 = 0: 8 steps from the largest grid sigma (about 14.27 on SD's schedule). 15 steps: grid
    range(1, 1000, 66) = 16 sigmas, t_enc 14, 16 steps. DPM2 at 10 steps builds 11 (1000 // 11 = 90:
    12 sigmas) and drops the penultimate: 12 values, t_enc 9, start 0, 11 steps. With a UNet that
    predicts eps = 0 and Euler, the output is the decode of ``init + eps * sigmas[0]``."""
    from retouch.sampling.noise import ImageNoise
    from retouch.sampling.registry import build_sigmas, get_sampler

    eng = _zero_unet_engine()
    job = _job(sampler_name=sampler, scheduler="DDIM", steps=steps, denoising_strength=1.0)
    seen: list[tuple[int, int]] = []
    out = eng.run(job, on_step=lambda s: seen.append((s.step, s.steps))).images[0]
    assert len(seen) == expected_run and seen[-1] == (expected_run, expected_run)
    sigmas = build_sigmas(get_sampler(sampler), "ddim", steps, eng.runtime.model_sigmas)
    assert len(sigmas) == expected_run + 1
    if sampler == "Euler":
        assert float(sigmas[0]) == pytest.approx(float(eng.runtime.model_sigmas[995 if steps == 7 else 991]))
        init = eng.runtime.encode([_scene()], [1234])
        eps = ImageNoise([1234], [job.subseed], 0.0, (4, SIZE // 8, SIZE // 8)).first()
        assert out.tobytes() == eng.runtime.decode(init + eps * sigmas[0])[0].tobytes()
