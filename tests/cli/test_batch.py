"""``retouch batch``: A1111's batch rules, resume, bad files skipped, summary (issue #5)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouch.cli.batch import list_files, match_masks
from retouch.cli.errors import CliError
from retouch.cli.progress import Progress
from retouch.formats.png import read_infotext

from .conftest import Loader, Run, box_mask, noise_image

LEFT, RIGHT = (0, 0, 16, 32), (16, 0, 32, 32)


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_match_masks_rules(tmp_path: Path) -> None:
    inputs = [tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"]
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "only.png").write_bytes(b"")
    assert match_masks(inputs, masks, None) == dict.fromkeys(inputs, masks / "only.png")  # one for all
    (masks / "a.webp").write_bytes(b"")
    (masks / "b.png").write_bytes(b"")
    assert match_masks(inputs, masks, None) == {  # by stem, whatever the extension
        inputs[0]: masks / "a.webp",
        inputs[1]: masks / "b.png",
        inputs[2]: None,
    }
    assert match_masks(inputs, None, masks / "b.png") == dict.fromkeys(inputs, masks / "b.png")
    assert match_masks(inputs, None, None) == dict.fromkeys(inputs)
    with pytest.raises(CliError, match="--mask: no such file"):
        match_masks(inputs, None, masks / "zzz.png")


def test_list_files_skips_hidden_and_folders(tmp_path: Path) -> None:
    for name in ("b.png", "a.png", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_files(tmp_path, "INPUT_DIR")] == ["a.png", "b.png"]
    with pytest.raises(CliError, match="INPUT_DIR: no such folder"):
        list_files(tmp_path / "nope", "INPUT_DIR")


def test_batch_masks_by_stem_resume_and_bad_files(
    tmp_path: Path, cli: Callable[..., Run], loader: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    src.mkdir()
    masks.mkdir()
    a, b = noise_image(src / "a.png", seed=1), noise_image(src / "b.png", seed=2)
    noise_image(src / "c.png", seed=3)  # no mask named c.*: skipped
    (src / "notes.txt").write_text("not an image")  # bad file: skipped
    box_mask(masks / "a.png", (32, 32), LEFT)
    box_mask(masks / "b.png", (32, 32), RIGHT)
    args = ("batch", src, "-o", out, "--mask-dir", masks, "--seed", "9", "--steps", "2", "--mask-blur", "0")

    # Run 1: Ctrl-C while b is being sampled -> a is written, b's unfinished image discarded.
    original = Progress.step

    def ctrl_c_during_second_input(self: Progress, step: int, steps: int) -> None:
        original(self, step, steps)
        if self.images_done == 1 and step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Progress, "step", ctrl_c_during_second_input)
    first = cli(*args)
    monkeypatch.setattr(Progress, "step", original)
    assert first.code == 130, first.err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert (
        first.out.splitlines()[-1]
        == "batch: 1 done (1 image(s) written), 0 already done, 0 failed, interrupted"
    )

    # Run 2: resumes: a is left alone, b is written, c and notes.txt are reported and skipped.
    before = _snapshot(out)
    second = cli(*args)
    assert second.code == 1  # some inputs failed
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert _snapshot(out)["a.png"] == before["a.png"]
    assert f"skipped {src / 'c.png'}: no mask named c.* in the mask folder" in second.err
    assert f"skipped {src / 'notes.txt'}: " in second.err and "is not an image" in second.err
    assert second.out.splitlines()[-1] == "batch: 1 done (1 image(s) written), 1 already done, 2 failed"

    # Each output kept the unmasked half of its own input exactly: the masks were matched by stem.
    for name, source, kept in (("a.png", a, slice(16, 32)), ("b.png", b, slice(0, 16))):
        got = np.asarray(Image.open(out / name).convert("RGB"))
        want = np.asarray(Image.open(source).convert("RGB"))
        assert np.array_equal(got[:, kept], want[:, kept])
        assert "Seed: 9" in (read_infotext(out / name) or "")

    # Run 3: nothing new is written and the model is not even loaded.
    calls = len(loader.calls)
    before = _snapshot(out)
    third = cli(*args)
    assert _snapshot(out) == before
    assert len(loader.calls) == calls
    assert third.out.splitlines()[-1] == "batch: 0 done (0 image(s) written), 2 already done, 2 failed"


def test_batch_several_images_per_input_and_one_mask_for_all(tmp_path: Path, cli: Callable[..., Run]) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    noise_image(src / "x.png")
    mask = box_mask(tmp_path / "m.png", (32, 32), LEFT)
    run = cli("batch", src, "-o", out, "--mask", mask, "--seed", "4", "--steps", "2", "--batch-count", "2")
    assert run.code == 0, run.err
    assert sorted(p.name for p in out.iterdir()) == ["x-1.png", "x-2.png"]
    assert "Seed: 4," in (read_infotext(out / "x-1.png") or "")
    assert "Seed: 5," in (read_infotext(out / "x-2.png") or "")  # A1111: seed + image index
    assert run.out.splitlines()[-1] == "batch: 1 done (2 image(s) written), 0 already done, 0 failed"


def test_batch_bad_arguments(tmp_path: Path, cli: Callable[..., Run], loader: Loader) -> None:
    src = tmp_path / "in"
    src.mkdir()
    noise_image(src / "x.png")
    for args, fragment in [
        (("batch", tmp_path / "nope", "-o", tmp_path / "o"), "INPUT_DIR: no such folder"),
        (("batch", src, "-o", src), "output folder must differ"),
        (("batch", src, "-o", tmp_path / "o", "--sampler", "Nope"), "unknown sampler 'Nope'"),
        (
            ("batch", src, "-o", tmp_path / "o", "--mask-dir", tmp_path / "nomasks"),
            "--mask-dir: no such folder",
        ),
        (
            ("batch", src, "-o", tmp_path / "o", "--mask", src / "x.png", "--mask-dir", src),
            "either --mask or",
        ),
    ]:
        run = cli(*args)
        assert run.code == 2, (args, run.err)
        assert run.err.startswith("retouch: error: ") and fragment in run.err
    assert cli("batch", src).code == 2  # -o is required
    assert loader.calls == []


def test_batch_duplicate_stems_reported(tmp_path: Path, cli: Callable[..., Run]) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    noise_image(src / "p.png")
    Image.open(src / "p.png").save(src / "p.webp")
    run = cli("batch", src, "-o", out, "--seed", "1", "--steps", "2")
    assert run.code == 1
    assert f"skipped {src / 'p.webp'}: same output name as p.png" in run.err
    assert sorted(p.name for p in out.iterdir()) == ["p.png"]
