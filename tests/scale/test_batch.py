"""``retouch batch --ray``: a Ray Data pipeline with the rules of ``retouch batch`` (same outputs)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.conftest import box_mask, noise_image
from retouch.cli import main
from retouch.formats.png import read_infotext


def _folder(root: Path) -> tuple[Path, Path]:
    """12 images, masks for 2 of them, and one broken file."""
    src, masks = root / "in", root / "masks"
    src.mkdir()
    masks.mkdir()
    for i in range(12):
        noise_image(src / f"img{i:02d}.png", seed=i)
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    box_mask(masks / "img03.png", (32, 32), (0, 0, 16, 32))
    box_mask(masks / "img07.png", (32, 32), (16, 0, 32, 32))
    return src, masks


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _files(folder: Path) -> dict[str, tuple[bytes, str | None]]:
    return {p.name: (np.asarray(Image.open(p)).tobytes(), read_infotext(p)) for p in sorted(folder.iterdir())}


def test_batch_on_ray_matches_the_local_batch_resumes_and_reports_bad_files(
    ray_cluster: None, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, masks = _folder(tmp_path)
    common = ("--model", checkpoints["a"], "--seed", "5", "--steps", "2", "--precision", "fp32", "--threads", "1")
    ray = ("--ray", "--replicas", "2", "--cpus-per-replica", "0.5")
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    for out, extra in ((local_out, ()), (ray_out, ray)):
        # Inpaint the two inputs that have masks (the other 10 have none: skipped), then img2img the rest.
        code, _, err = _run(capsys, "batch", src, "-o", out, "--mask-dir", masks, *common, *extra)
        assert code == 1 and err.count("no mask named") == 10 and "broken.png" in err
        code, stdout, err = _run(capsys, "batch", src, "-o", out, *common, *extra)
        assert code == 1, err
        assert "batch: 10 done (10 image(s) written), 2 already done, 1 failed" in stdout
    assert "progress: 11 input(s) finished" in err  # the Ray run reports each finished input
    assert _files(ray_out) == _files(local_out)
    assert sorted(_files(ray_out)) == [f"img{i:02d}.png" for i in range(12)]
    before = {p.name: p.stat().st_mtime_ns for p in ray_out.iterdir()}
    code, stdout, err = _run(capsys, "batch", src, "-o", ray_out, *common, *ray)
    assert "batch: 0 done (0 image(s) written), 12 already done, 1 failed" in stdout
    assert "skipped" in err and "progress:" not in err  # the broken file again; no pipeline ran
    assert {p.name: p.stat().st_mtime_ns for p in ray_out.iterdir()} == before


def test_without_ray_the_flag_fails_in_one_line_naming_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    noise_image(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like
    for argv in (("batch", tmp_path, "-o", tmp_path / "o", "--ray"), ("serve", "--ray")):
        code, out, err = _run(capsys, *argv)
        assert (code, out) == (1, "")
        assert err.splitlines() == ["retouch: error: Ray is not installed; install the extra with: pip install 'retouch[ray]'"]
