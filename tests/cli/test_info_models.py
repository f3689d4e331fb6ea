"""``retouch models``, ``retouch serve`` and the entry point (issue #5)."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from retouch.cli import main
from retouch.cli.listing import safetensors_shapes

from .conftest import Run


@pytest.fixture
def models_dir(tmp_path: Path, tiny: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    from retouch.models.ldm_layout import save_ldm_checkpoint

    monkeypatch.setenv("RETOUCH_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "models"
    (root / "sub").mkdir(parents=True)
    save_ldm_checkpoint(tiny, root / "sub" / "tiny.safetensors")
    (root / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    (root / "readme.txt").write_text("not a model")
    folder = root / "inpaint-diffusers"
    for part, config in {
        "model_index.json": {"_class_name": "StableDiffusionInpaintPipeline"},
        "unet/config.json": {"in_channels": 9},
        "text_encoder/config.json": {"hidden_act": "quick_gelu"},
    }.items():
        (folder / part).parent.mkdir(parents=True, exist_ok=True)
        (folder / part).write_text(json.dumps(config))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")  # part of the folder
    return root


def test_models_lists_family_and_hash(models_dir: Path, cli: Callable[..., Run]) -> None:
    run = cli("models", models_dir, "--json")
    assert run.code == 0, run.err
    entries = {Path(e["path"]).name: e for e in json.loads(run.out)}
    assert sorted(entries) == ["broken.safetensors", "inpaint-diffusers", "tiny.safetensors"]
    tiny = entries["tiny.safetensors"]
    digest = hashlib.sha256((models_dir / "sub" / "tiny.safetensors").read_bytes()).hexdigest()
    assert (tiny["name"], tiny["family"], tiny["hash"], tiny["error"]) == ("tiny", "sd1", digest[:10], None)
    assert entries["inpaint-diffusers"]["family"] == "sd1-inpaint"
    assert entries["inpaint-diffusers"]["hash"] is None
    assert entries["broken.safetensors"]["family"] == "unknown"
    assert entries["broken.safetensors"]["error"]

    table = cli("models", models_dir)
    lines = table.out.splitlines()
    assert lines[0].split() == ["NAME", "FAMILY", "HASH", "PATH"]
    assert any(line.split()[:3] == ["tiny", "sd1", digest[:10]] for line in lines)


def test_models_empty_and_missing_folder(tmp_path: Path, cli: Callable[..., Run]) -> None:
    run = cli("models", tmp_path)
    assert run.code == 0 and run.out.strip() == f"no checkpoints found in {tmp_path}"
    missing = cli("models", tmp_path / "nope")
    assert missing.code == 2 and missing.err.startswith("retouch: error: no such folder")


def test_safetensors_header_shapes(models_dir: Path) -> None:
    shapes = safetensors_shapes(models_dir / "sub" / "tiny.safetensors")
    assert shapes["model.diffusion_model.input_blocks.0.0.weight"] == (32, 4, 3, 3)


def test_serve_passes_options_through(cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    import retouch.server.app as server_app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server_app, "serve", lambda **kwargs: seen.update(kwargs))
    run = cli(
        "serve", "--model", "m.safetensors", "--port", "9999", "--api-auth", "u:p", "--precision", "fp32",
        "--threads", "1", "--no-webui", "--backend", "openvino",
    )
    assert run.code == 0, run.err
    assert seen == {
        "model": "m.safetensors",
        "host": "127.0.0.1",
        "port": 9999,
        "api_auth": "u:p",
        "max_queue": 16,
        "precision": "fp32",
        "device": None,
        "log_level": "info",
        "threads": 1,
        "webui": False,
        "backend": "openvino",
        "engine_options": {"max_memory": None, "preset": None, "vae_cache_size": 16},
    }


def test_serve_without_server_extra(cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "retouch.server.app", None)  # import now raises ImportError
    run = cli("serve")
    assert run.code == 1
    assert run.err.startswith("retouch: error: the server is not available")
    assert "pip install 'retouch[server]'" in run.err


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("img2img", "inpaint", "batch", "info", "models", "serve"):
        assert command in out
    assert main(["frobnicate"]) == 2
    assert main(["img2img", "x.png", "--resize-mode", "stretch"]) == 2
    assert "stretch" in capsys.readouterr().err
