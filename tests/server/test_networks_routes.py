"""A1111's extra-network routes and LoRA tags over HTTP (spec a1111-prompts.md §4.1, §5.1, §5.7).

The shapes are A1111's (``/sdapi/v1/loras``: list of {name, alias, path, metadata}; ``/embeddings``:
{"loaded", "skipped"}); a tag naming no file is a 422 that lists the available names, where A1111
only logs "Lora not found".
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from retouch.engine import Engine
from retouch.infotext import parse_infotext
from retouch.models.hashing import addnet_hash, file_sha256
from retouch.server import create_app
from retouch.testing import tiny_model

from .conftest import payload


def _lora(folder: Path, model, name: str, alias: str | None = None) -> Path:
    q = model.text_encoders[0].get_submodule("encoder.layers.0.self_attn.q_proj")
    out_f, in_f = q.weight.shape
    g = torch.Generator().manual_seed(1)
    key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    tensors = {f"{key}.lora_down.weight": torch.randn(2, in_f, generator=g),
               f"{key}.lora_up.weight": torch.randn(out_f, 2, generator=g)}
    path = folder / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={"ss_output_name": alias} if alias else None)
    return path


def test_loras_embeddings_and_their_refreshes(tmp_path: Path) -> None:
    model = tiny_model(seed=0)
    loras, embs = tmp_path / "lora", tmp_path / "emb"
    loras.mkdir()
    embs.mkdir()
    first = _lora(loras, model, "first", alias="nice")
    width = model.text_encoders[0].get_input_embeddings().weight.shape[1]
    save_file({"emb_params": torch.ones(2, width)}, str(embs / "myemb.safetensors"))
    save_file({"emb_params": torch.ones(1, width + 1)}, str(embs / "wide.safetensors"))
    engine = Engine(model, precision="fp32", lora_dir=loras, embeddings_dir=embs)
    with TestClient(create_app(engine=engine)) as client:
        assert client.get("/sdapi/v1/loras").json() == [
            {"name": "first", "alias": "nice", "path": str(first), "metadata": {"ss_output_name": "nice"}}
        ]
        _lora(loras, model, "second")
        assert [e["name"] for e in client.get("/sdapi/v1/loras").json()] == ["first"]
        assert client.post("/sdapi/v1/refresh-loras").status_code == 200
        assert [e["name"] for e in client.get("/sdapi/v1/loras").json()] == ["first", "second"]
        listing = client.get("/sdapi/v1/embeddings").json()
        assert list(listing["loaded"]) == ["myemb"] and list(listing["skipped"]) == ["wide"]
        assert listing["loaded"]["myemb"]["vectors"] == 2 and listing["loaded"]["myemb"]["shape"] == width

        bad = client.post("/sdapi/v1/img2img", json=payload(prompt="a <lora:nope:1>"))
        assert bad.status_code == 422 and "nope" in bad.text and "first" in bad.text and "second" in bad.text
        ok = client.post("/sdapi/v1/img2img", json=payload(prompt="a <lora:nice:0.7> myemb"))
        assert ok.status_code == 200
        info = parse_infotext(json.loads(ok.json()["info"])["infotexts"][0])
        assert info["Lora hashes"] == f"nice: {addnet_hash(first)[:12]}"
        assert info["TI hashes"] == f"myemb: {file_sha256(embs / 'myemb.safetensors')[:12]}"


def test_without_folders_the_lists_are_empty(engine: Engine) -> None:
    with TestClient(create_app(engine=engine)) as client:
        assert client.get("/sdapi/v1/loras").json() == []
        assert client.get("/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}
        resp = client.post("/sdapi/v1/img2img", json=payload(prompt="a <lora:x:1>"))
        assert resp.status_code == 422 and "no LoRA folder is configured" in resp.text
