"""Memory-mapped safetensors reading (loading._mapped_safetensors): bit-identical to safetensors' own reader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from retouch.models.loading import DEMO_MODEL_PATH, read_state_dict


def _reference(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


def test_demo_checkpoint_reads_bit_identical() -> None:
    mapped, meta = read_state_dict(DEMO_MODEL_PATH)
    ref, ref_meta = _reference(DEMO_MODEL_PATH)
    _same(mapped, ref)
    assert meta == ref_meta


def test_mixed_dtypes_odd_sizes_and_empty_tensors(tmp_path: Path) -> None:
    """An odd-length uint8 tensor first leaves every later tensor misaligned (copied); all read exactly."""
    g = torch.Generator().manual_seed(0)
    tensors = {
        "a.u8": torch.randint(0, 255, (3,), dtype=torch.uint8, generator=g),
        "b.f32": torch.randn(5, 7, generator=g),
        "c.bf16": torch.randn(9, generator=g).to(torch.bfloat16),
        "d.f16": torch.randn(2, 3, 4, generator=g).to(torch.float16),
        "e.i64": torch.arange(6, dtype=torch.int64),
        "f.empty": torch.empty(0, 4),
        "g.big": torch.randn(300, 300, generator=g),  # spans pages
    }
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path), metadata={"k": "v"})
    mapped, meta = read_state_dict(path)
    _same(mapped, _reference(path)[0])
    assert meta == {"k": "v"}


def test_writes_to_loaded_tensors_never_reach_the_file(tmp_path: Path) -> None:
    """The maps are private (copy-on-write): a LoRA merge in place leaves the checkpoint untouched."""
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(1000)}, str(path))
    before = path.read_bytes()
    mapped, _ = read_state_dict(path)
    mapped["w"].add_(1.0)
    assert float(mapped["w"][0]) == 2.0 and path.read_bytes() == before


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.ones(1000)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cannot read checkpoint|runs past the end"):
        read_state_dict(path)
