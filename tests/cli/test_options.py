"""CLI option translation, naming, infotext recall and progress arithmetic (no model)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from retouch.cli.errors import CliError
from retouch.cli.options import AreaChoice, MaskedChoice, ResizeChoice, job_fields, processing_size
from retouch.cli.outputs import batch_names, next_sequence_number, save_numbered
from retouch.cli.progress import Progress, format_duration
from retouch.cli.recall import fields_from_infotext, model_mismatch
from retouch.formats.png import read_infotext
from retouch.infotext import parse_infotext
from retouch.params import UI_DEFAULTS, Img2Img, MaskedContent, ResizeMode

UI_EXAMPLE = (
    "a red knitted hat, studio photo\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, "
    "Inpaint area: Only masked, Masked area padding: 32, Version: v1.10.1"
)

DEFAULT_OPTS = {
    "prompt": "",
    "negative": "",
    "steps": 20,
    "denoise": 0.75,
    "cfg": 7.0,
    "image_cfg": 1.5,
    "sampler": "DPM++ 2M",
    "scheduler": "Automatic",
    "seed": -1,
    "subseed": -1,
    "subseed_strength": 0.0,
    "size": None,
    "scale_by": None,
    "resize_mode": ResizeChoice.just,
    "batch_size": 1,
    "batch_count": 1,
    "clip_skip": 1,
    "noise_multiplier": 1.0,
    "color_correction": False,
    "mask_blur": 4,
    "mask_blur_x": None,
    "mask_blur_y": None,
    "invert_mask": False,
    "masked_content": MaskedChoice.original,
    "area": AreaChoice.whole,
    "padding": 32,
    "no_mask_round": False,
}


def test_defaults_are_the_web_ui_defaults() -> None:
    fields = job_fields(DEFAULT_OPTS, set(), {})
    job = Img2Img(init_images=[Image.new("RGB", (8, 8))], **fields)
    assert job.sampler_name == UI_DEFAULTS["sampler_name"] == "DPM++ 2M"
    assert job.steps == 20
    assert job.inpainting_fill == MaskedContent.ORIGINAL
    assert job.inpaint_full_res is False
    assert job.inpaint_full_res_padding == 32
    assert job.mask_blur == 4
    assert job.seed_resize_from_w == job.seed_resize_from_h == 0
    assert job.image_cfg_scale == 1.5
    assert job.cfg_scale == 7 and isinstance(job.cfg_scale, int)  # written "CFG scale: 7" like the UI
    assert job.resize_mode == ResizeMode.JUST_RESIZE


def test_choices_map_to_enums() -> None:
    opts = dict(
        DEFAULT_OPTS,
        resize_mode=ResizeChoice.latent,
        masked_content=MaskedChoice.latent_nothing,
        area=AreaChoice.only_masked,
        invert_mask=True,
        no_mask_round=True,
        cfg=6.5,
        batch_count=3,
    )
    f = job_fields(opts, set(), {})
    assert f["resize_mode"] == ResizeMode.LATENT_UPSCALE
    assert f["inpainting_fill"] == MaskedContent.LATENT_NOTHING
    assert f["inpaint_full_res"] is True
    assert f["inpainting_mask_invert"] == 1
    assert f["mask_round"] is False
    assert f["cfg_scale"] == 6.5
    assert f["n_iter"] == 3


def test_mask_blur_axes_override() -> None:
    f = job_fields(dict(DEFAULT_OPTS, mask_blur=6, mask_blur_x=2), set(), {})
    assert (f["mask_blur"], f["mask_blur_x"], f["mask_blur_y"]) == (None, 2, 6)


def test_infotext_beats_defaults_and_explicit_beats_infotext() -> None:
    recalled = fields_from_infotext(parse_infotext(UI_EXAMPLE))
    f = job_fields(dict(DEFAULT_OPTS, steps=9, seed=5), {"steps"}, recalled)
    assert f["steps"] == 9  # typed on the command line
    assert f["seed"] == 1234  # from the infotext (the option was left at its default)
    assert f["prompt"] == "a red knitted hat, studio photo"
    assert f["negative_prompt"] == "blurry, lowres"
    assert f["scheduler"] == "Karras"
    assert f["inpaint_full_res"] is True
    assert "width" not in f and "height" not in f


def test_recall_of_spec_example() -> None:
    fields = fields_from_infotext(parse_infotext(UI_EXAMPLE))
    assert fields == {
        "prompt": "a red knitted hat, studio photo",
        "negative_prompt": "blurry, lowres",
        "steps": 20,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "cfg_scale": 7,
        "seed": 1234,
        "width": 512,
        "height": 512,
        "denoising_strength": 0.75,
        "clip_skip": 1,
        "mask_blur": 4,
        "inpainting_mask_invert": 0,
        "inpaint_full_res": True,
        "inpaint_full_res_padding": 32,
        "inpainting_fill": MaskedContent.ORIGINAL,
    }
    assert isinstance(fields["cfg_scale"], int)
    assert isinstance(fields_from_infotext({"CFG scale": "7.0"})["cfg_scale"], float)


def test_recall_bad_value_names_key() -> None:
    with pytest.raises(CliError, match="cannot use 'Steps: many'"):
        fields_from_infotext({"Steps": "many"})
    with pytest.raises(CliError, match="Masked content: everything.*expected one of 'fill'"):
        fields_from_infotext({"Masked content": "everything"})


def test_model_mismatch_note() -> None:
    parsed = parse_infotext(UI_EXAMPLE)
    assert model_mismatch(parsed, "v1-5-pruned-emaonly", "6ce0161689") is None
    note = model_mismatch(parsed, "tiny", "0000000000")
    assert note is not None and "v1-5-pruned-emaonly [6ce0161689]" in note


@pytest.mark.parametrize(
    ("size", "scale", "explicit", "recalled", "image", "expected"),
    [
        (None, None, set(), {}, (100, 61), (96, 56)),  # the input's size, floored to 8
        ("640x480", None, {"size"}, {}, (100, 61), (640, 480)),
        (None, 0.5, {"scale_by"}, {}, (100, 61), (48, 24)),  # int(50)->48, int(30.5)=30->24
        (None, None, set(), {"width": 512, "height": 256}, (100, 61), (512, 256)),
        (None, 2.0, {"scale_by"}, {"width": 512, "height": 256}, (100, 61), (200, 120)),
    ],
)
def test_processing_size(size, scale, explicit, recalled, image, expected) -> None:  # type: ignore[no-untyped-def]
    opts = dict(DEFAULT_OPTS, size=size, scale_by=scale)
    assert processing_size(opts, explicit, recalled, image) == expected


@pytest.mark.parametrize(
    ("size", "scale", "image", "message"),
    [
        ("512", None, (64, 64), "WIDTHxHEIGHT"),
        ("512x512", 2.0, (64, 64), "either --size or --scale-by"),
        (None, 0.0, (64, 64), "positive"),
        (None, 0.1, (64, 64), "smaller than 8x8"),
    ],
)
def test_processing_size_errors(size, scale, image, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CliError, match=message):
        processing_size(dict(DEFAULT_OPTS, size=size, scale_by=scale), set(), {}, image)


def test_sequence_numbers_and_collisions(tmp_path: Path) -> None:
    assert next_sequence_number(tmp_path / "missing") == 1
    (tmp_path / "00007-1.png").write_bytes(b"")
    (tmp_path / "00003-9.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    assert next_sequence_number(tmp_path) == 8
    im = Image.new("RGB", (4, 4))
    first = save_numbered(im, tmp_path, 42, "p\nSteps: 1, Seed: 42, Sampler: Euler")
    second = save_numbered(im, tmp_path, 42, None)
    assert (first.name, second.name) == ("00008-42.png", "00009-42.png")
    assert read_infotext(first) == "p\nSteps: 1, Seed: 42, Sampler: Euler"


def test_batch_names() -> None:
    assert batch_names("cat", 1) == ["cat.png"]
    assert batch_names("cat", 3) == ["cat-1.png", "cat-2.png", "cat-3.png"]


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(61.4) == "1:01"
    assert format_duration(3723) == "1:02:03"


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_fraction_and_eta_follow_a1111() -> None:
    clock = _Clock()
    p = Progress(4, 8, err=io.StringIO(), out=io.StringIO(), tty=False, clock=clock)
    p.start_batch(2)
    p.step(5, 10)
    assert p.fraction(5, 10) == pytest.approx(0.5 / 4)
    p.finish_batch(2)
    clock.t = 110.0  # 10 s elapsed, 1 of 4 batches done -> 30 s left
    assert p.fraction() == pytest.approx(0.25)
    assert p.eta(0.25) == pytest.approx(30.0)


def test_progress_plain_lines_throttled() -> None:
    clock, err = _Clock(), io.StringIO()
    p = Progress(1, 1, err=err, out=io.StringIO(), tty=False, interval=1.0, clock=clock)
    p.start_batch(1)
    for step in range(1, 5):  # no time passes: first and last step only
        p.step(step, 4)
    lines = err.getvalue().splitlines()
    assert lines == ["image 1/1: step 1/4 (25%, ETA 0:00)", "image 1/1: step 4/4 (100%, ETA 0:00)"]


def test_progress_tty_bar_and_clean_messages() -> None:
    clock, err, out = _Clock(), io.StringIO(), io.StringIO()
    p = Progress(2, 4, err=err, out=out, tty=True, clock=clock)
    p.start_batch(2)
    clock.t = 104.0
    p.step(2, 4)  # 25% done after 4 s -> 12 s left
    assert "\r[######------------------]  25% images 1-2/4 step 2/4 ETA 0:12" in err.getvalue()
    p.message("saved x.png")
    assert out.getvalue() == "saved x.png\n"
    assert err.getvalue().endswith("\r\x1b[K")  # status line cleared before the message
