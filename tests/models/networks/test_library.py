"""LoRA folder discovery, names and aliases as A1111 v1.10.1 ``process_network_files``/``load_networks``
(spec §5.1); expected values follow A1111's order: walk order, name = stem, alias = ss_output_name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from retouch.models.networks.errors import NetworkError
from retouch.models.networks.library import LoraLibrary


def _write(path: Path, alias: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ss_output_name": alias} if alias else None
    if path.suffix == ".safetensors":
        save_file({"x": torch.zeros(1)}, path, metadata=metadata)
    else:
        torch.save({"x": torch.zeros(1)}, path)
    return path


def test_discovery_is_recursive_and_name_is_the_stem(tmp_path):
    _write(tmp_path / "a.safetensors", alias="Alpha")
    _write(tmp_path / "sub" / "deeper" / "b.pt")
    _write(tmp_path / "c.CKPT")
    (tmp_path / "notes.txt").write_text("not a network")
    _write(tmp_path / ".hidden" / "h.safetensors")
    lib = LoraLibrary(tmp_path)
    assert lib.names() == ["a", "b", "c"]
    items = {e.name: e.as_api() for e in lib.list()}
    assert items["a"] == {"name": "a", "alias": "Alpha", "path": str(tmp_path / "a.safetensors"),
                          "metadata": {"ss_output_name": "Alpha"}}
    assert items["b"]["alias"] == "b" and items["b"]["metadata"] == {}
    assert lib.find("Alpha").name == "a" and lib.find("a").name == "a"


def test_a_later_file_with_the_same_stem_wins(tmp_path):
    """A1111 walks folders in natural order (root before ``sub``), so ``sub/x`` replaces ``x``."""
    _write(tmp_path / "x.safetensors")
    later = _write(tmp_path / "sub" / "x.pt")
    lib = LoraLibrary(tmp_path)
    assert [e.path for e in lib.list()] == [later]
    assert lib.find("x").path == later


def test_an_alias_used_twice_works_only_as_an_exact_name(tmp_path):
    _write(tmp_path / "one.safetensors", alias="style")
    _write(tmp_path / "two.safetensors", alias="style")
    _write(tmp_path / "style.safetensors")
    lib = LoraLibrary(tmp_path)
    assert lib.find("style").path == tmp_path / "style.safetensors"  # forbidden alias: the file named so
    assert lib.find("one").name == "one" and lib.find("two").name == "two"


def test_a_forbidden_alias_without_such_a_file_is_refused(tmp_path):
    _write(tmp_path / "one.safetensors", alias="style")
    _write(tmp_path / "two.safetensors", alias="style")
    with pytest.raises(NetworkError, match="alias of several files"):
        LoraLibrary(tmp_path).find("style")


def test_none_is_always_forbidden(tmp_path):
    _write(tmp_path / "n.safetensors", alias="none")
    lib = LoraLibrary(tmp_path)
    with pytest.raises(NetworkError):
        lib.find("none")
    _write(tmp_path / "none.pt")
    lib.refresh()
    assert lib.find("none").name == "none"


def test_unknown_name_lists_the_available_ones(tmp_path):
    _write(tmp_path / "detail.safetensors")
    _write(tmp_path / "style.pt")
    with pytest.raises(NetworkError, match=r"no LoRA named 'detial'; available: detail, style"):
        LoraLibrary(tmp_path).find("detial")
    with pytest.raises(NetworkError, match="no .pt/.ckpt/.safetensors files"):
        LoraLibrary(tmp_path / "missing").find("x")


def test_names_are_case_sensitive_and_refresh_sees_new_files(tmp_path):
    _write(tmp_path / "Foo.safetensors")
    lib = LoraLibrary(tmp_path)
    with pytest.raises(NetworkError):
        lib.find("foo")
    _write(tmp_path / "bar.safetensors")
    assert lib.names() == ["Foo"]
    lib.refresh()
    assert lib.names() == ["Foo", "bar"]


def test_short_hash_is_the_addnet_hash(tmp_path):
    path = tmp_path / "foo.safetensors"
    path.write_bytes(bytes.fromhex("0200000000000000") + b"{}abc")
    assert LoraLibrary(tmp_path).find("foo").short_hash() == "ba7816bf8f01"
