"""Soft inpainting over the A1111 API (``alwayson_scripts``, infotext) and our job API's named fields.

T14 of spec soft-masks.md §5.5: A1111 matches the script title lower-cased, fills a short ``args`` list
with the UI defaults, treats ``enabled`` false as off, and answers an unknown script with 422
``Script '<name>' not found`` (§1.10). The parity test checks the "done when" item: an A1111 client
sending soft inpainting gets the bytes and infotext the library gives for the same fields.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from retouch.engine import Engine
from retouch.infotext import parse_infotext
from retouch.params import DifferentialDiffusion, Img2Img, ParamError, SoftInpainting
from retouch.server.a1111.options import default_options
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.a1111.translate import build_submission
from retouch.server.api.schemas import JobRequest
from retouch.server.config import ServerConfig

from .conftest import b64, decode, gradient, payload

NAMES = ("tiny.safetensors [0123456789]", "tiny")


def _soft_mask() -> Image.Image:
    """A grey-level mask: a soft disc, 255 in the middle, falling to 0 over 12 px."""
    y, x = np.mgrid[0:64, 0:64]
    r = np.hypot(x - 32, y - 32)
    return Image.fromarray(np.clip((24 - r) * 255 / 12, 0, 255).astype(np.uint8), "L")


def _job(req: Img2ImgRequest) -> Img2Img:
    return build_submission(req, default_options(NAMES[0]), ServerConfig(), NAMES).job


def _req(cls: type[Img2ImgRequest] = Img2ImgRequest, **fields: Any) -> Img2ImgRequest:
    fields.setdefault("init_images", [b64(gradient())])
    fields.setdefault("mask", b64(_soft_mask()))
    return cls(**fields)


def test_title_is_case_insensitive_and_short_args_keep_defaults_t14() -> None:
    """{"Soft Inpainting": {"args": [true]}} -> A1111's defaults; 2 args -> power set, the rest default."""
    assert _job(_req(alwayson_scripts={"Soft Inpainting": {"args": [True]}})).soft_inpainting == SoftInpainting()
    job = _job(_req(alwayson_scripts={"SOFT INPAINTING": {"args": [True, 2.5]}}))
    assert job.soft_inpainting == SoftInpainting(mask_blend_power=2.5)
    assert job.mask_round is False  # forced off, as A1111's process() does


def test_all_seven_args_and_enabled_false_t14() -> None:
    args = [True, 0.5, 1.25, 8, 0.3, 1.5, 3]
    soft = _job(_req(alwayson_scripts={"soft inpainting": {"args": args}})).soft_inpainting
    assert soft == SoftInpainting(0.5, 1.25, 8, 0.3, 1.5, 3)
    for off in ({"args": [False, 2]}, {"args": []}, {}):
        job = _job(_req(alwayson_scripts={"Soft inpainting": off}))
        assert job.soft_inpainting is None and job.mask_round is True


@pytest.mark.parametrize(
    ("scripts", "message"),
    [
        ({"ADetailer": {"args": []}}, "Script 'ADetailer' not found"),
        ({"soft inpainting": {"args": [True]}, "controlnet": {}}, "Script 'controlnet' not found"),
        ({"soft inpainting": {"args": [True, 1, 1, 1, 0, 1, 1, 9]}}, "at most 7 args"),
        ({"soft inpainting": {"args": ["yes"]}}, "args[0] (enabled) must be true or false"),
        ({"soft inpainting": {"args": [True, 1, 0.5, 0]}}, "soft_inpainting.inpaint_detail_preservation"),
        ({"soft inpainting": {"args": [True, 1, 0.5, 4, 2]}}, "soft_inpainting.composite_mask_influence must be in [0.0, 1.0]"),
        ({"soft inpainting": [True]}, "must be an object with an 'args' list"),
    ],
)
def test_bad_scripts_are_named_422s_t14(client: TestClient, scripts: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError) as e:
        _job(_req(alwayson_scripts=scripts))
    assert message in str(e.value)
    r = client.post("/sdapi/v1/img2img", json=payload(mask=b64(_soft_mask()), alwayson_scripts=scripts))
    assert r.status_code == 422 and message in r.json()["detail"]


def test_infotext_keys_map_to_script_args_t14() -> None:
    """A1111 ``apply_infotext``: the 7 keys of a pasted infotext enable the script with those values;
    an explicit alwayson_scripts entry wins."""
    text = ("x\nSteps: 3, Sampler: Euler, Seed: 5, Soft inpainting enabled: True, Soft inpainting schedule bias: 2, "
            "Soft inpainting preservation strength: 0.75, Soft inpainting difference contrast: 3, Mask blur: 4")
    job = _job(_req(infotext=text))
    assert job.soft_inpainting == SoftInpainting(mask_blend_power=2, mask_blend_scale=0.75,
                                                 composite_difference_contrast=3)
    job = _job(_req(infotext=text, alwayson_scripts={"Soft Inpainting": {"args": [False]}}))
    assert job.soft_inpainting is None


def test_a1111_client_gets_the_library_bytes_and_infotext(client: TestClient, engine: Engine) -> None:
    """An A1111 client sending soft inpainting gets exactly Engine.run's image and infotext for the same
    fields; the infotext has the 7 keys before Mask blur (soft-masks.md §1.10) and reads back."""
    body = payload(mask=b64(_soft_mask()), mask_blur=4, inpaint_full_res=False, inpainting_fill=1,
                   alwayson_scripts={"Soft inpainting": {"args": [True, 1, 0.5, 4, 0, 0.5, 2]}})
    r = client.post("/sdapi/v1/img2img", json=body)
    assert r.status_code == 200, r.text
    served = decode(r.json()["images"][0])
    job = Img2Img(prompt="a red square", init_images=[gradient()], mask=_soft_mask(), width=64, height=64,
                  steps=3, seed=1234, cfg_scale=7.0, mask_blur=4, inpaint_full_res=False, inpainting_fill=1,
                  soft_inpainting=SoftInpainting(1, 0.5, 4, 0, 0.5, 2))
    result = engine.run(job)
    assert served.convert("RGB").tobytes() == result.images[0].tobytes()
    info = json.loads(r.json()["info"])
    assert info["infotexts"][0] == result.infotexts[0]
    keys = list(parse_infotext(result.infotexts[0]))
    soft = keys.index("Soft inpainting enabled")
    assert keys[soft : soft + 8] == [
        "Soft inpainting enabled", "Soft inpainting schedule bias", "Soft inpainting preservation strength",
        "Soft inpainting transition contrast boost", "Soft inpainting mask influence",
        "Soft inpainting difference threshold", "Soft inpainting difference contrast", "Mask blur"]
    again = _job(_req(infotext=result.infotexts[0]))
    assert again.soft_inpainting == job.soft_inpainting


def test_job_api_named_fields_reach_the_job() -> None:
    """Our job API: soft inpainting and the other options by name, in one body with a soft mask."""
    req = _req(JobRequest, soft_inpainting={"mask_blend_scale": 1.5}, keep_unmasked_exact=True,
               paste_back="exact", seam_correction="lowfreq", seam_radius=16)
    job = _job(req)
    assert job.soft_inpainting == SoftInpainting(mask_blend_scale=1.5)
    assert (job.keep_unmasked_exact, job.paste_back, job.seam_correction, job.seam_radius) == (
        True, "exact", "lowfreq", 16)
    cover = _job(_req(JobRequest, latent_mask_mode="cover+1", grid_aligned_crop=True))
    assert (cover.latent_mask_mode, cover.grid_aligned_crop) == ("cover+1", True)
    with pytest.raises(ParamError, match="latent_mask_mode 'cover' makes the latent mask binary"):
        _job(_req(JobRequest, latent_mask_mode="cover", soft_inpainting={}))
    dd = _job(_req(JobRequest, differential_diffusion={"strength": 0.5, "reference": "absolute"}))
    assert dd.differential_diffusion == DifferentialDiffusion(strength=0.5, reference="absolute")
    with pytest.raises(ParamError, match="given twice"):
        _job(_req(JobRequest, soft_inpainting={}, alwayson_scripts={"soft inpainting": {"args": [True]}}))
    with pytest.raises(ParamError, match="seam_radius must be in"):
        _job(_req(JobRequest, seam_radius=2))


def test_job_api_echoes_soft_options_in_infotext(client: TestClient) -> None:
    """POST /api/v1/jobs with a grey-level mask and named fields: the result's infotext echoes them."""
    body = payload(mask=b64(_soft_mask()), inpaint_full_res=False, soft_inpainting={"mask_blend_power": 2},
                   keep_unmasked_exact=True, paste_back="exact")
    r = client.post("/api/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    for _ in range(600):
        view = client.get(f"/api/v1/jobs/{job_id}").json()
        if view["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert view["status"] == "done", view
    parsed = parse_infotext(json.loads(view["result"]["info"])["infotexts"][0])
    assert parsed["Soft inpainting enabled"] == "True" and parsed["Soft inpainting schedule bias"] == "2"
    assert parsed["Keep unmasked exact"] == "True" and parsed["Paste back"] == "exact"


def _alpha_only_mask() -> Image.Image:
    """The soft disc carried only by alpha, over black luminance: what a painting app exports (LA PNG)."""
    return Image.merge("LA", [Image.new("L", (64, 64), 0), _soft_mask()])


def test_alpha_only_masks_g4(client: TestClient) -> None:
    """G4: A1111's endpoint keeps A1111's rule (an LA mask is read as its luminance: all 0, so the job has
    no mask left and says so, as A1111's blank-mask fallback); our job API's ``mask_alpha: "auto"`` reads
    the alpha, giving exactly the processing mask of the same disc sent as grey levels; ``"alpha"`` with a
    grey mask is a 422 naming the modes that carry transparency; the option is echoed as ``Mask alpha``.
    An alpha source is thresholded when ``mask_round`` (A1111's rule for RGBA alpha), so a soft alpha mask
    needs ``mask_round: false`` or soft inpainting / differential diffusion, which turn rounding off."""
    from retouch.imaging import to_single_channel_mask
    from retouch.info import soft_mask_fields, soft_mask_params
    from retouch.preprocess import BLANK_MASK_COMMENT, prepare_images

    a1111 = _job(_req(mask=b64(_alpha_only_mask())))
    assert a1111.mask is not None and a1111.mask.mode == "LA" and a1111.mask_alpha == "a1111"
    assert prepare_images(a1111, 64, 64).comments == (BLANK_MASK_COMMENT,)
    auto = _job(_req(JobRequest, mask=b64(_alpha_only_mask()), mask_alpha="auto", mask_round=False))
    grey = _job(_req(JobRequest))
    rounded = to_single_channel_mask(auto.mask, True, "auto")  # alpha > 128, as A1111's rule for RGBA alpha
    assert set(np.unique(np.asarray(rounded)).tolist()) == {0, 255}
    got, want = prepare_images(auto, 64, 64), prepare_images(grey, 64, 64)
    assert got.mask is not None and want.mask is not None and got.mask.tobytes() == want.mask.tobytes()
    assert got.paste_box == want.paste_box and got.comments == ()
    assert soft_mask_params(auto, True) == {"Mask alpha": "auto"}
    assert soft_mask_fields({"Mask alpha": "auto"}) == {"mask_alpha": "auto"}
    assert soft_mask_params(grey, True) == {}
    with pytest.raises(ParamError, match="mask_alpha 'alpha' needs a mask with transparency"):
        _job(_req(JobRequest, mask_alpha="alpha"))
    r = client.post("/api/v1/jobs", json=payload(mask=b64(_soft_mask()), mask_alpha="alpha"))
    assert r.status_code == 422 and "mode 'L' without one" in r.text
    r = client.post("/api/v1/jobs", json=payload(mask=b64(_soft_mask()), mask_alpha="red"))
    assert r.status_code == 422 and "luminance" in r.text
