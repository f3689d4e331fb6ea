"""Every kind of bad input gets a 4xx in A1111's error shape whose detail names the problem; never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from retouch.engine import Engine

from .conftest import b64, gradient, payload, square_mask


def check(r: Any, status: int, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail", "body", "errors"}
    for needle in needles:
        assert needle in str(body["detail"]), (needle, body["detail"])
    return body


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"init_images": ["@@@not-base64@@@"]}, ["init_images[0]", "not valid base64"]),
        ({"init_images": ["data:image/png;base64,aGVsbG8="]}, ["init_images[0]", "is not an image"]),
        ({"init_images": [b64(gradient(8, 8), fmt="PPM")]}, ["unsupported format PPM", "allowed formats: PNG"]),
        ({"mask": "!!"}, ["mask: image is not valid base64"]),
        ({"init_images": []}, ["init_images is required"]),
        ({"init_images": None}, ["init_images is required"]),
        ({"sampler_name": "Euler z"}, ["unknown sampler 'Euler z'", "valid samplers: DPM++ 2M", "Euler a"]),
        ({"scheduler": "Fancy"}, ["unknown schedule type 'Fancy'", "Karras (karras)"]),
        ({"steps": -3}, ["steps must be in [1, 10000]", "-3"]),
        ({"steps": 0}, ["steps must be in [1, 10000]"]),
        ({"denoising_strength": -0.5}, ["denoising_strength must be in [0.0, 1.0]"]),
        ({"denoising_strength": 1.5}, ["denoising_strength must be in [0.0, 1.0]"]),
        ({"cfg_scale": -1}, ["cfg_scale must be in"]),
        ({"resize_mode": 7}, ["resize_mode must be one of 0 (JUST_RESIZE)", "3 (LATENT_UPSCALE)"]),
        ({"inpainting_fill": 9}, ["inpainting_fill must be one of"]),
        ({"mask_blur": -1}, ["mask_blur must be in [0, 256]"]),
        ({"seed": 2**80}, ["seed must be in [-1, 4294967295]"]),
        ({"width": -64}, ["width must be in [8, 16384]"]),
        ({"batch_size": 9}, ["batch_size value 9 is over this server's limit of 8"]),
        ({"n_iter": 1000}, ["n_iter value 1000 is over this server's limit of 16"]),
        ({"steps": 151}, ["steps value 151 is over this server's limit of 150"]),
        ({"width": 8192, "height": 8192}, ["8192x8192 is over this server's limit of 4194304 pixels"]),
        ({"script_name": "x/y/z plot"}, ["script_name 'x/y/z plot' is not supported", "'sd upscale', 'loopback'"]),
        ({"script_name": "sd upscale", "script_args": ["", 8, "ESRGAN_4x", 2]}, ["upscaler 'ESRGAN_4x'", "Lanczos"]),
        ({"alwayson_scripts": {"controlnet": {"args": []}}}, ["Script 'controlnet' not found"]),
        ({"override_settings": {"sd_vae": "x.pt"}}, ["override_settings.sd_vae must be 'Automatic' or 'None'"]),
        ({"override_settings": {"bogus": 1}}, ["unsupported option(s) in override_settings: bogus"]),
        ({"steps": "abc"}, ["steps: Input should be a valid integer", "'abc'"]),
        ({"init_images": "abc"}, ["init_images: Input should be a valid list"]),
        ({"mask_image": "abc"}, ["mask_image: unknown field", "Allowed fields: prompt"]),
    ],
)
def test_bad_values_are_422_naming_the_field(client: TestClient, changes: dict[str, Any], needles: list[str]) -> None:
    check(client.post("/sdapi/v1/img2img", json=payload(**changes)), 422, *needles)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinity_literals_are_refused(client: TestClient, literal: str) -> None:
    raw = json.dumps(payload()).replace('"cfg_scale": 7.0', f'"cfg_scale": {literal}')
    r = client.post("/sdapi/v1/img2img", content=raw, headers={"content-type": "application/json"})
    check(r, 422, "cfg_scale: Input should be a finite number")


def test_malformed_json_and_wrong_body_type(client: TestClient) -> None:
    r = client.post("/sdapi/v1/img2img", content=b'{"prompt": ', headers={"content-type": "application/json"})
    check(r, 422, "request body is not valid JSON")
    check(client.post("/sdapi/v1/img2img", json=[1, 2]), 422, "Input should be a valid dictionary")
    check(client.post("/sdapi/v1/img2img"), 422, "Field required")
    r = client.post("/sdapi/v1/img2img", content=b'{"prompt": "\xff"}', headers={"content-type": "application/json"})
    check(r, 400, "request body could not be read (UnicodeDecodeError", "send a UTF-8 JSON object")


def test_image_and_mask_over_the_pixel_limit(make_client: Any) -> None:
    client = make_client(max_image_pixels=48 * 48)
    check(client.post("/sdapi/v1/img2img", json=payload()), 422, "init_images[0]: image is 64x64 = 4096 pixels")
    small = payload(init_images=[b64(gradient(32, 32))], mask=b64(square_mask(), prefix=True))
    check(client.post("/sdapi/v1/img2img", json=small), 422, "mask: image is 64x64 = 4096 pixels; the limit is 2304")


def test_mask_size_differs_from_image(client: TestClient) -> None:
    """Only masked needs equal sizes (spec §8.5): refused; Whole picture resizes the mask (spec §2.7)."""
    body = payload(mask=b64(square_mask(32, 32, (8, 8, 24, 24))), inpaint_full_res=True)
    check(client.post("/sdapi/v1/img2img", json=body), 422, "mask size 32x32 differs from init_images[0] size 64x64")
    body["inpaint_full_res"] = False
    assert client.post("/sdapi/v1/img2img", json=body).status_code == 200


def test_body_over_limit_is_413(make_client: Any) -> None:
    client = make_client(max_body_bytes=10_000)
    big = payload(prompt="x" * 20_000)
    check(client.post("/sdapi/v1/img2img", json=big), 413, "larger than this server's limit of 10000 bytes")

    def chunks() -> Any:  # no Content-Length: the limit still holds while streaming
        for _ in range(30):
            yield b" " * 1000

    r = client.post("/sdapi/v1/img2img", content=chunks(), headers={"content-type": "application/json"})
    check(r, 413, "10000 bytes")
    assert client.post("/sdapi/v1/img2img", json=payload()).status_code == 200  # a normal one still passes


def test_unknown_routes_methods_and_jobs(client: TestClient) -> None:
    check(client.get("/sdapi/v1/nothing"), 404, "Not Found")
    check(client.get("/sdapi/v1/img2img"), 405, "Method Not Allowed")
    check(client.get("/api/v1/jobs/abc"), 404, "no job with id 'abc'")
    check(client.delete("/api/v1/jobs/abc"), 404, "no job with id 'abc'")
    check(client.get("/sdapi/v1/progress", params={"skip_current_image": "maybe"}), 422, "skip_current_image")


def test_duplicate_force_task_id(make_client: Any, engine: Engine) -> None:
    client = make_client()
    assert client.post("/api/v1/jobs", json=payload(force_task_id="task(abc)")).status_code == 202
    check(client.post("/api/v1/jobs", json=payload(force_task_id="task(abc)")), 422, "force_task_id", "task(abc)")


class Exploding:
    """An engine that fails unexpectedly on one prompt (a bug or an out-of-memory, say)."""

    def __init__(self, inner: Engine) -> None:
        self.inner, self.model = inner, inner.model

    def run(self, job: Any, **kw: Any) -> Any:
        if job.prompt == "explode":
            raise RuntimeError("simulated out of memory")
        return self.inner.run(job, **kw)


def test_engine_failure_is_a_500_json_and_the_worker_keeps_going(make_client: Any, engine: Engine) -> None:
    client = make_client(Exploding(engine))
    body = check(client.post("/sdapi/v1/img2img", json=payload(prompt="explode")), 500, "simulated out of memory")
    assert body["error"] == "RuntimeError"
    assert client.post("/sdapi/v1/img2img", json=payload()).status_code == 200


def test_job_time_limit_interrupts_instead_of_hanging(make_client: Any) -> None:
    client = make_client(max_job_seconds=0.0)
    r = client.post("/sdapi/v1/img2img", json=payload(steps=50, n_iter=3))
    assert r.status_code == 200
    info = json.loads(r.json()["info"])
    assert info["interrupted"] is True and len(r.json()["images"]) <= 1  # stopped before batch 2
    assert any("limit of 0.0 s per job" in c for c in info["comments"])


def test_grey_alpha_and_odd_modes_are_accepted(client: TestClient) -> None:
    rgba = Image.new("RGBA", (64, 64), (10, 200, 30, 0))
    la = Image.new("LA", (64, 64), (90, 255))
    for image in (rgba, la, Image.new("I;16", (64, 64), 300)):
        assert client.post("/sdapi/v1/img2img", json=payload(init_images=[b64(image)])).status_code == 200
