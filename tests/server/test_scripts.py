"""Scripts, styles and the A1111 listing routes and UI options, as A1111's own HTTP test suite uses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from retouch.engine import Engine
from retouch.infotext import parse_infotext

from .conftest import GatedEngine, decode, payload


def test_sd_upscale_as_a1111s_test_suite_sends_it(client: TestClient) -> None:
    """A1111 test_img2img_sd_upscale_performed: 64x64 init, ``["", 8, "Lanczos", 2.0]``. Lanczos x2 gives
    128x128; 64x64 tiles with overlap 8 make a 3x3 grid; one combined image comes back, its infotext the
    first tile's (Size 64x64, start seed) with the script's keys; ``info`` width/height are the tile's."""
    r = client.post("/sdapi/v1/img2img", json=payload(script_name="sd upscale", script_args=["", 8, "Lanczos", 2.0],
                                                      denoising_strength=0.3, steps=2))
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["images"]) == 1 and decode(body["images"][0]).size == (128, 128)
    info = json.loads(body["info"])
    assert info["seed"] == 1234 and info["width"] == 64 and info["height"] == 64
    assert info["all_seeds"] == [1234 + 8]  # the last of 9 one-tile batches
    assert info["extra_generation_params"]["SD upscale overlap"] == "8"
    assert info["extra_generation_params"]["SD upscale upscaler"] == "Lanczos"
    params = parse_infotext(info["infotexts"][0])
    assert params["Size-1"] == "64" and params["Seed"] == "1234"
    assert body["parameters"]["script_name"] == "sd upscale"


def test_loopback_returns_grid_then_loops(client: TestClient) -> None:
    r = client.post("/sdapi/v1/img2img", json=payload(script_name="loopback", script_args=[3, 0.3, "Linear", "None"],
                                                      denoising_strength=0.6, steps=2))
    assert r.status_code == 200, r.text
    body = r.json()
    sizes = [decode(im).size for im in body["images"]]
    assert sizes == [(192, 64), (64, 64), (64, 64), (64, 64)]
    info = json.loads(body["info"])
    assert info["seed"] == 1234 and info["all_seeds"] == [1236]
    assert info["extra_generation_params"]["Final denoising strength"] == "0.3"
    assert info["infotexts"] == [info["infotexts"][0]] * 4
    assert info["denoising_strength"] == 0.6 + (0.3 - 0.6) * 3 / 2  # A1111's p after the last loop


def test_return_grid_off_drops_the_loopback_grid(client: TestClient) -> None:
    r = client.post("/sdapi/v1/img2img", json=payload(script_name="Loopback", script_args=[2], steps=2,
                                                      override_settings={"return_grid": False}))
    assert r.status_code == 200, r.text
    assert [decode(im).size for im in r.json()["images"]] == [(64, 64), (64, 64)]


def test_script_errors_are_422s_naming_the_problem(client: TestClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"script_name": "x/y/z plot"}, "'sd upscale', 'loopback'"),
        ({"script_name": "sd upscale", "script_args": ["", 8, "R-ESRGAN 4x+", 2]}, "None, Lanczos, Nearest"),
        ({"script_name": "sd upscale", "script_args": ["", 64, "None", 2]}, "overlap"),
        ({"script_name": "loopback", "script_args": [4, 0.5, "Linear", "DeepBooru"]}, "DeepBooru"),
        ({"script_name": "sd upscale", "script_args": ["", 8, "Lanczos", 80]}, "over this server's limit"),
    ]
    for fields, needle in cases:
        r = client.post("/sdapi/v1/img2img", json=payload(**fields))
        assert r.status_code == 422 and needle in r.json()["detail"], (fields, r.text)


def test_progress_counts_the_scripts_engine_calls(make_client: Any, engine: Engine) -> None:
    """SD upscale sets A1111's state.job_count to the number of tile batches: 9 here, one per tile."""
    gated = GatedEngine(engine, gate_step=1)
    client = make_client(gated)
    job = client.post("/api/v1/jobs", json=payload(script_name="sd upscale", script_args=["", 8, "Lanczos", 2],
                                                   steps=2, denoising_strength=0.5)).json()["id"]
    assert gated.reached.wait(30)
    state = client.get("/sdapi/v1/progress").json()
    gated.release()
    assert state["state"]["job_count"] == 9 and state["state"]["job_no"] == 0
    assert 0.01 < state["progress"] < 1 / 9 + 0.01
    for _ in range(600):
        if client.get(f"/api/v1/jobs/{job}").json()["status"] == "done":
            break
        gated.reached.wait(0.05)
    assert {n for n, _ in gated.steps} == {0}  # each engine call is one job of n_iter 1
    assert len(gated.steps) == 9 * 2


def test_script_list_and_info_have_a1111s_shape(client: TestClient) -> None:
    assert client.get("/sdapi/v1/scripts").json() == {"txt2img": [], "img2img": ["sd upscale", "loopback"]}
    info = {i["name"]: i for i in client.get("/sdapi/v1/script-info").json()}
    assert set(info) == {"sd upscale", "loopback"}
    up = info["sd upscale"]
    assert up["is_alwayson"] is False and up["is_img2img"] is True
    assert [a["label"] for a in up["args"]] == ["", "Tile overlap", "Upscaler", "Scale Factor"]
    assert up["args"][1] == {"label": "Tile overlap", "value": 64, "minimum": 0, "maximum": 256, "step": 16,
                             "choices": None}
    assert up["args"][2]["choices"] == ["None", "Lanczos", "Nearest"]
    assert [a["label"] for a in info["loopback"]["args"]] == [
        "Loops", "Final denoising strength", "Denoising strength curve",
        "Append interrogated prompt at each iteration"]
    assert client.get("/sdapi/v1/upscalers").json() == [
        {"name": n, "model_name": None, "model_path": None, "model_url": None, "scale": 4.0}
        for n in ("None", "Lanczos", "Nearest")
    ]


def test_ui_only_options_round_trip_as_a1111s_test(client: TestClient) -> None:
    """A1111 test_options_write: read send_seed, write its negation, read it back, restore."""
    before = client.get("/sdapi/v1/options").json()["send_seed"]
    assert before is True
    assert client.post("/sdapi/v1/options", json={"send_seed": not before}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["send_seed"] is (not before)
    assert client.post("/sdapi/v1/options", json={"send_seed": before}).status_code == 200
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Options"]["properties"]
    assert "no effect on this server" in schema["send_seed"]["description"]


def test_styles_from_a_styles_file(make_client: Any, tmp_path: Path) -> None:
    styles = tmp_path / "styles.csv"
    styles.write_text('name,prompt,negative_prompt\nNoir,"film noir photo of {prompt}",colour\nSharp,sharp,\n',
                      encoding="utf-8")
    client = make_client(styles_file=str(styles))
    assert client.get("/sdapi/v1/prompt-styles").json() == [
        {"name": "Noir", "prompt": "film noir photo of {prompt}", "negative_prompt": "colour"},
        {"name": "Sharp", "prompt": "sharp", "negative_prompt": ""},
    ]
    r = client.post("/sdapi/v1/img2img", json=payload(styles=["Noir", "Sharp"], negative_prompt="blur", steps=2))
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["prompt"] == "a red square" and info["styles"] == ["Noir", "Sharp"]
    assert info["all_prompts"] == ["film noir photo of a red square, sharp"]
    assert info["all_negative_prompts"] == ["blur, colour"]
    assert info["infotexts"][0].startswith("film noir photo of a red square, sharp\nNegative prompt: blur, colour\n")
    r = client.post("/sdapi/v1/img2img", json=payload(styles=["Noir", "Pastel"]))
    assert r.status_code == 422 and "'Pastel' not found; known styles: 'Noir', 'Sharp'" in r.json()["detail"]
