"""``retouch img2img`` / ``retouch inpaint`` in-process on the tiny model (issue #5)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from retouch.cli import main
from retouch.cli.progress import Progress
from retouch.formats.png import read_infotext
from retouch.infotext import parse_infotext

from .conftest import Loader, Run, box_mask, noise_image

FAST = ["--steps", "2"]


def _one_line_error(run: Run, code: int, *fragments: str) -> None:
    assert run.code == code, (run.out, run.err)
    assert run.err.startswith("retouch: error: ")
    assert run.err.strip().count("\n") == 0, run.err
    for fragment in fragments:
        assert fragment in run.err


def test_img2img_numbered_outputs_with_infotext(tmp_path: Path, cli: Callable[..., Run]) -> None:
    a, b = noise_image(tmp_path / "a.png"), noise_image(tmp_path / "b.png", (40, 24), seed=1)
    out = tmp_path / "out"
    run = cli("img2img", a, b, "-p", "a red hat", "-n", "blurry", "--seed", "11", *FAST, "-o", out)
    assert run.code == 0, run.err
    assert sorted(p.name for p in out.iterdir()) == ["00001-11.png", "00002-11.png"]
    assert run.out.splitlines() == [f"saved {out / '00001-11.png'}", f"saved {out / '00002-11.png'}"]
    assert "step 2/2" in run.err  # plain progress lines (not a TTY)
    first, second = Image.open(out / "00001-11.png"), Image.open(out / "00002-11.png")
    assert first.size == (32, 32) and second.size == (40, 24)  # the inputs' own sizes
    info = parse_infotext(read_infotext(out / "00001-11.png") or "")
    assert (info["Prompt"], info["Negative prompt"]) == ("a red hat", "blurry")
    assert info["Steps"] == "2" and info["Seed"] == "11" and info["Size"] == "32x32"
    assert info["Sampler"] == "DPM++ 2M" and info["Schedule type"] == "Karras"  # UI default, resolved
    assert info["CFG scale"] == "7" and info["Denoising strength"] == "0.75"
    assert "Mask blur" not in info  # no mask: no mask keys


def test_inpaint_from_infotext_reproduces_bytes(tmp_path: Path, cli: Callable[..., Run]) -> None:
    image = noise_image(tmp_path / "in.png")
    mask = box_mask(tmp_path / "mask.png", (32, 32), (8, 8, 24, 24))
    out = tmp_path / "out"
    options = ["--masked-content", "fill", "--area", "only-masked", "--padding", "4", "--mask-blur", "2"]
    run = cli("inpaint", image, "--mask", mask, "-p", "hat", "--seed", "7", *FAST, *options, "-o", out)
    assert run.code == 0, run.err
    first = out / "00001-7.png"
    text = read_infotext(first) or ""
    assert "Mask blur: 2, Inpaint area: Only masked, Masked area padding: 4, Masked content: fill" in text
    again = cli("inpaint", image, "--mask", mask, "--from-infotext", first, "-o", out)
    assert again.code == 0, again.err
    second = out / "00002-7.png"  # same seed, next counter: no collision
    assert second.read_bytes() == first.read_bytes()


def test_info_round_trips_parameters(tmp_path: Path, cli: Callable[..., Run]) -> None:
    text = (
        'a cat, ünïcode\nNegative prompt: dog\nSteps: 20, Sampler: Euler, Seed: 3, Size: 64x48, Note: "a, b"'
    )
    path = tmp_path / "x.png"
    from retouch.formats.png import save_png

    save_png(Image.new("RGB", (8, 8)), path, text)
    plain = cli("info", path)
    assert plain.code == 0 and plain.out == text + "\n"
    as_json = cli("info", path, "--json")
    parsed = json.loads(as_json.out)
    assert parsed == parse_infotext(text)
    assert parsed["Note"] == "a, b" and parsed["Size-1"] == "64" and parsed["Prompt"] == "a cat, ünïcode"


def test_info_without_parameters_and_missing(tmp_path: Path, cli: Callable[..., Run]) -> None:
    bare = noise_image(tmp_path / "bare.png")
    run = cli("info", bare)
    assert run.code == 1 and "holds no generation parameters" in run.err
    _one_line_error(cli("info", tmp_path / "none.png"), 2, "no such file")


def test_bad_input_fails_fast_without_loading_the_model(
    tmp_path: Path, cli: Callable[..., Run], loader: Loader
) -> None:
    image = noise_image(tmp_path / "in.png")
    small_mask = box_mask(tmp_path / "small.png", (16, 16), (0, 0, 8, 8))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a png")
    _one_line_error(cli("img2img", tmp_path / "missing.png"), 2, "no such file", "missing.png")
    _one_line_error(cli("img2img", junk), 2, "junk.png is not an image; allowed formats: PNG, JPEG")
    _one_line_error(cli("inpaint", image, "--mask", small_mask), 2, "mask", "is 16x16 but image", "is 32x32")
    _one_line_error(cli("inpaint", image, "--mask", tmp_path / "nomask.png"), 2, "mask: no such file")
    _one_line_error(
        cli("img2img", image, "--sampler", "Bogus"), 2, "unknown sampler 'Bogus'", "Euler a", "DPM++ 2M"
    )
    _one_line_error(cli("img2img", image, "--size", "big"), 2, "WIDTHxHEIGHT")
    _one_line_error(cli("img2img", image, "--denoise", "1.5"), 2, "denoising_strength must be in [0.0, 1.0]")
    _one_line_error(cli("img2img", image, "--from-infotext", image), 2, "holds no generation parameters")
    usage = cli("inpaint", image)
    assert usage.code == 2 and "--mask" in usage.err
    assert loader.calls == []


def test_model_load_failure_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = noise_image(tmp_path / "in.png")
    code = main(["img2img", str(image), "--model", str(tmp_path / "nope.safetensors")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("retouch: error: cannot load model") and "nope.safetensors" in err
    assert err.strip().count("\n") == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is allowed on a GPU")
def test_fp16_on_cpu_is_refused(tmp_path: Path, cli: Callable[..., Run]) -> None:
    image = noise_image(tmp_path / "in.png")
    _one_line_error(cli("img2img", image, "--precision", "fp16", "--device", "cpu"), 2, "fp16")


def test_bad_thread_count_is_one_line(tmp_path: Path, cli: Callable[..., Run]) -> None:
    image = noise_image(tmp_path / "in.png")
    _one_line_error(cli("img2img", image, "--threads", "0"), 2, "threads must be a whole number from 1 to")


def test_ctrl_c_discards_the_unfinished_image(
    tmp_path: Path, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Progress.step

    def step_then_ctrl_c(self: Progress, step: int, steps: int) -> None:
        original(self, step, steps)
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Progress, "step", step_then_ctrl_c)
    image = noise_image(tmp_path / "in.png")
    out = tmp_path / "out"
    run = cli(
        "img2img", image, "--seed", "3", "--steps", "3", "--denoise", "1", "--batch-count", "2", "-o", out
    )
    assert run.code == 130
    assert "stopping after the current step" in run.err
    assert "interrupted: 0 image(s) saved, 1 unfinished image(s) discarded" in run.err
    assert not out.exists() or list(out.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_unmasked_pixels_kept_with_zero_blur(tmp_path: Path, cli: Callable[..., Run]) -> None:
    image = noise_image(tmp_path / "in.png")
    mask = box_mask(tmp_path / "mask.png", (32, 32), (0, 0, 16, 32))  # left half
    out = tmp_path / "out"
    run = cli("inpaint", image, "--mask", mask, "--seed", "5", "--mask-blur", "0", *FAST, "-o", out)
    assert run.code == 0, run.err
    result = np.asarray(Image.open(out / "00001-5.png").convert("RGB"))
    source = np.asarray(Image.open(image).convert("RGB"))
    assert np.array_equal(result[:, 16:], source[:, 16:])
    assert not np.array_equal(result[:, :16], source[:, :16])


def test_unknown_backend_is_refused_with_the_choices(tmp_path: Path, cli: Callable[..., Run]) -> None:
    run = cli("img2img", noise_image(tmp_path / "in.png"), "--backend", "onnx")
    assert run.code == 2
    assert "torch" in run.err and "openvino" in run.err


def test_openvino_backend_without_the_extra_names_it(
    tmp_path: Path, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import now raises ImportError, as when absent
    run = cli("img2img", noise_image(tmp_path / "in.png"), "--backend", "openvino", "--device", "cpu", *FAST)
    _one_line_error(run, 2, "backend openvino needs the OpenVINO runtime", "pip install 'retouch[openvino]'")


def test_feature_cache_on_openvino_is_refused_before_converting(
    tmp_path: Path, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino", reason="the OpenVINO backend needs the extra: pip install 'retouch[openvino]'")
    monkeypatch.setenv("RETOUCH_CACHE_DIR", str(tmp_path / "cache"))
    run = cli("img2img", noise_image(tmp_path / "in.png"), "--backend", "openvino", "--device", "cpu",
              "--feature-cache", "2", *FAST)
    _one_line_error(run, 2, "feature_cache_interval", "needs backend torch")
    assert not (tmp_path / "cache").exists()  # nothing was converted
