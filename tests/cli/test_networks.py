"""``--lora-dir`` / ``--embeddings-dir`` and ``--emphasis`` on the command line (issue #11 item 6)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from retouch.formats.png import read_infotext
from retouch.infotext import parse_infotext
from retouch.models.hashing import addnet_hash

from .conftest import Run, noise_image


def _lora(folder: Path, model) -> Path:
    q = model.text_encoders[0].get_submodule("encoder.layers.0.self_attn.q_proj")
    out_f, in_f = q.weight.shape
    g = torch.Generator().manual_seed(1)
    key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clilora.safetensors"
    save_file({f"{key}.lora_down.weight": torch.randn(2, in_f, generator=g),
               f"{key}.lora_up.weight": torch.randn(out_f, 2, generator=g)}, str(path))
    return path


def test_lora_tag_from_the_cli_and_recall(tmp_path: Path, cli: Callable[..., Run], tiny) -> None:
    """The tag stays in the written prompt, Lora hashes and Emphasis are written, and
    ``--from-infotext`` restores emphasis (the re-run gives the same bytes)."""
    image = noise_image(tmp_path / "in.png")
    lora = _lora(tmp_path / "loras", tiny)
    args = ["--steps", "2", "--seed", "3", "--lora-dir", tmp_path / "loras"]
    run = cli("img2img", image, "-p", "a (cat:1.3) <lora:clilora:0.6>", "--emphasis", "No norm", *args,
              "-o", tmp_path / "out")
    assert run.code == 0, run.err
    first = tmp_path / "out" / "00001-3.png"
    parsed = parse_infotext(read_infotext(first))
    assert parsed["Prompt"] == "a (cat:1.3) <lora:clilora:0.6>"
    assert parsed["Lora hashes"] == f"clilora: {addnet_hash(lora)[:12]}" and parsed["Emphasis"] == "No norm"
    again = cli("img2img", image, "--from-infotext", first, "--lora-dir", tmp_path / "loras", "-o", tmp_path / "re")
    assert again.code == 0, again.err
    assert (tmp_path / "re" / "00001-3.png").read_bytes() == first.read_bytes()


def test_missing_lora_folder_and_unknown_name_are_one_line_errors(tmp_path: Path, cli: Callable[..., Run], tiny) -> None:
    image = noise_image(tmp_path / "in.png")
    run = cli("img2img", image, "-p", "x", "--lora-dir", tmp_path / "none", "-o", tmp_path / "o")
    assert run.code == 2 and "LoRA folder" in run.err and str(tmp_path / "none") in run.err
    _lora(tmp_path / "loras", tiny)
    run = cli("img2img", image, "-p", "<lora:other:1>", "--steps", "2", "--lora-dir", tmp_path / "loras",
              "-o", tmp_path / "o")
    assert run.code == 2 and "no LoRA named 'other'" in run.err and "clilora" in run.err
