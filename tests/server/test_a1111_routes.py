"""Every /sdapi/v1 route against the tiny model, in process."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from retouch.engine import Engine
from retouch.formats.png import read_infotext
from retouch.infotext import parse_infotext
from retouch.params import Img2Img
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.a1111.translate import build_submission

from .conftest import GatedEngine, b64, decode, gradient, payload, square_mask

INFO_KEYS = {
    "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
    "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps", "batch_size",
    "restore_faces", "face_restoration_model", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
    "seed_resize_from_w", "seed_resize_from_h", "denoising_strength", "extra_generation_params",
    "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip",
    "is_using_inpainting_conditioning", "version",
}


def test_img2img_returns_images_parameters_and_info(client: TestClient) -> None:
    r = client.post("/sdapi/v1/img2img", json=payload(n_iter=2, batch_size=1))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"images", "parameters", "info"}
    assert len(body["images"]) == 2 and not body["images"][0].startswith("data:")
    info = json.loads(body["info"])
    assert set(info) >= INFO_KEYS
    assert info["all_seeds"] == [1234, 1235] and info["seed"] == 1234  # seed + i (spec §2.16)
    assert (info["width"], info["height"], info["steps"], info["sampler_name"]) == (64, 64, 3, "Euler")
    assert info["sd_model_name"] == "tiny-sd1-0" and info["is_using_inpainting_conditioning"] is False
    assert info["all_prompts"] == ["a red square"] * 2 and info["index_of_first_image"] == 0
    assert body["parameters"]["init_images"] is None and body["parameters"]["mask"] is None
    assert body["parameters"]["steps"] == 3 and body["parameters"]["sampler_index"] == "Euler"
    for i, data in enumerate(body["images"]):
        image = decode(data)
        assert image.size == (64, 64) and image.format == "PNG"
        text = read_infotext(image)  # infotext in the PNG parameters chunk (spec §6.4)
        assert text == info["infotexts"][i]
        parsed = parse_infotext(text)
        assert (parsed["Prompt"], parsed["Steps"], parsed["Seed"], parsed["Size"]) == (
            "a red square", "3", str(1234 + i), "64x64")


def test_result_equals_a_direct_engine_run(client: TestClient, engine: Engine) -> None:
    """The server adds nothing to the pixels: same job through Engine.run gives the same image."""
    body = payload(denoising_strength=0.6, sampler_name="Euler a")
    r = client.post("/sdapi/v1/img2img", json=body)
    assert r.status_code == 200, r.text
    served = np.asarray(decode(r.json()["images"][0]).convert("RGB"))
    req = Img2ImgRequest(**body)
    job = build_submission(req, client.app.state.server.options.snapshot(), client.app.state.server.config,
                           client.app.state.server.model.names).job
    direct = np.asarray(engine.run(job).images[0].convert("RGB"))
    assert np.array_equal(served, direct)


def test_with_and_without_data_prefix_give_the_same_image(client: TestClient) -> None:
    a = client.post("/sdapi/v1/img2img", json=payload(init_images=[b64(gradient())]))
    b = client.post("/sdapi/v1/img2img", json=payload(init_images=[b64(gradient(), prefix=True)]))
    assert a.status_code == b.status_code == 200
    assert np.array_equal(np.asarray(decode(a.json()["images"][0])), np.asarray(decode(b.json()["images"][0])))


def test_inpaint_with_masks_returned_in_a1111_order(client: TestClient) -> None:
    body = payload(
        mask=b64(square_mask(), prefix=True), batch_size=2, inpainting_fill=1, inpaint_full_res=False,
        override_settings={"return_mask": True, "return_mask_composite": True},
    )
    r = client.post("/sdapi/v1/img2img", json=body)
    assert r.status_code == 200, r.text
    images = [decode(d) for d in r.json()["images"]]
    assert len(images) == 6  # per image: result, mask, composite (spec §5.3)
    assert read_infotext(images[0]) is not None and read_infotext(images[3]) is not None
    assert read_infotext(images[1]) is None and read_infotext(images[2]) is None
    src = np.asarray(gradient(), dtype=np.int16)
    for k in (0, 3):  # Whole picture overlay: pixels far outside the blurred mask are the original
        out = np.asarray(images[k].convert("RGB"), dtype=np.int16)
        assert np.abs(out[:4, :4] - src[:4, :4]).max() <= 1
    assert "Mask blur: 4" in json.loads(r.json()["info"])["infotexts"][0]


def test_send_images_false_and_include_init_images(client: TestClient) -> None:
    r = client.post("/sdapi/v1/img2img", json=payload(send_images=False, include_init_images=True))
    assert r.status_code == 200
    assert r.json()["images"] == []
    assert r.json()["parameters"]["init_images"] == payload()["init_images"]


def test_progress_while_running_then_interrupt_returns_partial_images(
    make_client: Any, engine: Engine
) -> None:
    gated = GatedEngine(engine, gate_step=2)
    client = make_client(gated)
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(r=client.post("/sdapi/v1/img2img", json=payload(
        steps=40, denoising_strength=1.0, n_iter=2))))
    t.start()
    assert gated.reached.wait(30)
    prog = client.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()
    st = prog["state"]
    assert (st["job_count"], st["job_no"], st["sampling_step"], st["sampling_steps"]) == (2, 0, 2, 40)
    assert prog["progress"] == pytest.approx(0.01 + 0 / 2 + (1 / 2) * (2 / 40))  # spec §5.6
    assert prog["eta_relative"] >= 0 and st["job"]
    assert client.post("/sdapi/v1/interrupt").json() == {}
    gated.release()
    t.join(30)
    r = out["r"]
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["interrupted"] is True
    assert len(r.json()["images"]) == 1  # batch 2 of n_iter never ran
    assert max(step for _, step in gated.steps) <= 3  # stopped within one sampler step of the gate
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0


def test_skip_ends_only_the_current_batch(make_client: Any, engine: Engine) -> None:
    gated = GatedEngine(engine, gate_step=2)
    client = make_client(gated)
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(r=client.post("/sdapi/v1/img2img", json=payload(
        steps=20, denoising_strength=1.0, n_iter=2))))
    t.start()
    assert gated.reached.wait(30)
    assert client.post("/sdapi/v1/skip").json() is None
    gated.release()
    t.join(30)
    r = out["r"]
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 2  # both batches produced an image
    batch0 = [s for j, s in gated.steps if j == 0]
    batch1 = [s for j, s in gated.steps if j == 1]
    assert max(batch0) <= 3 and max(batch1) == 20  # batch 0 cut short, batch 1 ran in full
    assert json.loads(r.json()["info"])["interrupted"] is False


def test_live_preview_is_returned_when_asked(make_client: Any, engine: Engine) -> None:
    gated = GatedEngine(engine, gate_step=6)
    client = make_client(gated)
    client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": 1})
    client.get("/sdapi/v1/progress")  # idle: nothing to preview
    job = client.post("/api/v1/jobs", json=payload(steps=10, denoising_strength=1.0)).json()
    assert gated.reached.wait(30)
    first = client.get("/sdapi/v1/progress").json()  # asks for a preview; the gate holds step 6
    gated.release()
    image = None
    for _ in range(200):
        prog = client.get("/sdapi/v1/progress").json()
        if prog["current_image"] or prog["state"]["job_count"] == 0:
            image = prog["current_image"]
            break
    assert first["state"]["sampling_step"] == 6
    assert image is not None and decode(image).size == (64, 64)
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] in ("running", "done")


def test_samplers_schedulers_models_scripts(client: TestClient) -> None:
    samplers = client.get("/sdapi/v1/samplers").json()
    names = [s["name"] for s in samplers]
    assert names[:2] == ["DPM++ 2M", "DPM++ SDE"] and "Euler" in names and "Euler a" in names
    euler_a = next(s for s in samplers if s["name"] == "Euler a")
    assert "k_euler_a" in euler_a["aliases"]
    schedulers = {s["name"]: s for s in client.get("/sdapi/v1/schedulers").json()}
    assert schedulers["karras"]["label"] == "Karras" and schedulers["karras"]["default_rho"] == 7.0
    assert schedulers["automatic"]["label"] == "Automatic"
    models = client.get("/sdapi/v1/sd-models").json()
    assert len(models) == 1 and models[0]["model_name"] == "tiny-sd1-0"
    assert models[0]["title"] == client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
    assert client.get("/sdapi/v1/scripts").json() == {"txt2img": [], "img2img": ["sd upscale", "loopback"]}


def test_options_post_changes_later_jobs_only(make_client: Any, engine: Engine) -> None:
    gated = GatedEngine(engine, gate_step=1)
    client = make_client(gated)
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1
    running = client.post("/api/v1/jobs", json=payload()).json()["id"]
    assert gated.reached.wait(30)
    assert client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code == 200
    later = client.post("/api/v1/jobs", json=payload()).json()["id"]
    gated.release()
    results = {}
    for job_id in (running, later):
        for _ in range(400):
            view = client.get(f"/api/v1/jobs/{job_id}").json()
            if view["status"] == "done":
                results[job_id] = json.loads(view["result"]["info"])
                break
            threading.Event().wait(0.02)
    assert results[running]["clip_skip"] == 1  # queued before the change: untouched
    assert results[later]["clip_skip"] == 2 and "Clip skip: 2" in results[later]["infotexts"][0]
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2


def test_options_post_refuses_unknown_and_bad_values(client: TestClient) -> None:
    r = client.post("/sdapi/v1/options", json={"not_an_option": 1, "img2img_fix_steps": True})
    assert r.status_code == 422 and "not_an_option" in r.json()["detail"]
    assert "img2img_fix_steps" in r.json()["detail"]  # the supported list
    r = client.post("/sdapi/v1/options", json={"inpainting_mask_weight": 2.0})
    assert r.status_code == 422 and "inpainting_mask_weight must be in [0.0, 1.0]" in r.json()["detail"]
    assert client.get("/sdapi/v1/options").json()["img2img_fix_steps"] is False


def test_png_info_round_trip(client: TestClient) -> None:
    image = client.post("/sdapi/v1/img2img", json=payload()).json()["images"][0]
    r = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + image})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["info"].startswith("a red square\nSteps: 3, Sampler: Euler")
    assert body["parameters"]["Seed"] == "1234" and body["parameters"]["Size-1"] == "64"
    assert client.post("/sdapi/v1/png-info", json={"image": b64(gradient())}).json()["info"] == ""
    assert client.post("/sdapi/v1/png-info", json={"image": "   "}).json()["info"] == ""
    bad = client.post("/sdapi/v1/png-info", json={"image": "%%%"})
    assert bad.status_code == 422 and "not valid base64" in bad.json()["detail"]


def test_infotext_field_sets_the_seed(client: TestClient) -> None:
    body = payload(infotext="x\nSteps: 3, Sampler: Euler, Seed: 777")
    body.pop("seed")
    info = json.loads(client.post("/sdapi/v1/img2img", json=body).json()["info"])
    assert info["seed"] == 777


def test_unknown_job_is_a_clear_error_in_img2img_shape(client: TestClient) -> None:
    r = client.post("/sdapi/v1/img2img", json=payload(sampler_name="Euler z"))
    assert r.status_code == 422
    body = r.json()
    assert set(body) == {"error", "detail", "body", "errors"}
    assert "unknown sampler 'Euler z'; valid samplers: DPM++ 2M" in body["detail"]


def test_direct_job_matches_img2img_class(client: TestClient) -> None:
    """Sanity: the translated job is a real Img2Img with the request's values."""
    sub = build_submission(Img2ImgRequest(**payload()), client.app.state.server.options.snapshot(),
                           client.app.state.server.config, client.app.state.server.model.names)
    assert isinstance(sub.job, Img2Img) and sub.job.steps == 3 and sub.job.seed == 1234
