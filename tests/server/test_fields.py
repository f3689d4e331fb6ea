"""``GET /api/v1/fields``: the form schema (A1111 names, UI defaults, ranges, help), generated from the
request schema so that new request fields appear in it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from pydantic import Field

from retouch.server.a1111.options import SUPPORTED
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.api.fields import HIDDEN, form_fields
from retouch.server.config import ServerConfig

from .conftest import payload
from .test_jobs_api import wait_done


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in body["fields"]}


def test_known_fields_have_a1111_labels_ui_defaults_and_server_limits(make_client: Any) -> None:
    client = make_client(max_steps=40, max_batch_size=3)
    body = client.get("/api/v1/fields").json()
    fields = by_name(body)
    steps = fields["steps"]
    assert (steps["label"], steps["default"], steps["api_default"]) == ("Sampling steps", 20, 50)
    assert (steps["min"], steps["max"], steps["ui_max"], steps["infotext"]) == (1, 40, 40, "Steps")
    assert fields["batch_size"]["max"] == 3 and fields["cfg_scale"]["ui_max"] == 30
    area = fields["inpaint_full_res"]
    assert area["default"] is False and area["api_default"] is True  # UI default differs (spec §8.9)
    assert [c["label"] for c in area["choices"]] == ["Whole picture", "Only masked"]
    assert fields["inpainting_fill"]["default"] == 1 and fields["inpaint_full_res_padding"]["default"] == 32
    assert [g["id"] for g in body["groups"]][:2] == ["prompt", "sampling"]
    assert {f["group"] for f in body["fields"]} <= {g["id"] for g in body["groups"]}
    assert fields["override_settings.show_progress_every_n_steps"]["default"] == 10  # the server's option


def test_listed_choices_exist_and_every_name_is_a_request_field(client: TestClient) -> None:
    fields = by_name(client.get("/api/v1/fields").json())
    samplers = [s["name"] for s in client.get(fields["sampler_name"]["choices_from"]).json()]
    labels = [s["label"] for s in client.get(fields["scheduler"]["choices_from"]).json()]
    assert fields["sampler_name"]["default"] in samplers and fields["scheduler"]["default"] in labels
    request = set(Img2ImgRequest.model_fields)
    for name in fields:
        top, _, option = name.partition(".")
        assert top in request and (not option or option in SUPPORTED), name
    assert not set(fields) & HIDDEN
    for generic in ("mask_round", "eta", "s_churn", "initial_noise_multiplier"):  # no hand entry: "More"
        assert fields[generic]["group"] == "more", generic


def test_a_form_of_all_defaults_is_accepted_and_runs(client: TestClient) -> None:
    body: dict[str, Any] = {"override_settings": {}}
    for f in client.get("/api/v1/fields").json()["fields"]:
        top, _, option = f["name"].partition(".")
        if option:
            body["override_settings"][option] = f["default"]
        else:
            body[top] = f["default"]
    body.update(width=64, height=64, steps=2, init_images=payload()["init_images"])
    r = client.post("/api/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    assert wait_done(client, r.json()["id"])["status"] == "done"


def test_a_new_request_field_appears_with_its_type_range_and_help() -> None:
    class Extended(Img2ImgRequest):
        soft_inpainting: bool = Field(False, description="blend softly at the mask's edge")
        soft_power: float = Field(1.0, ge=0.0, le=8.0, description="edge power")
        tags: list[str] = Field(default_factory=list)  # not a scalar: no form field

    fields = {f.name: f for f in form_fields(ServerConfig(), {}, Extended).fields}
    soft, power = fields["soft_inpainting"], fields["soft_power"]
    assert (soft.group, soft.type, soft.widget, soft.default) == ("more", "boolean", "checkbox", False)
    assert soft.help == "blend softly at the mask's edge"
    assert (power.type, power.min, power.max, power.default) == ("number", 0.0, 8.0, 1.0)
    assert "tags" not in fields
