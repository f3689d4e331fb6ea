"""Token merging through every entry point: A1111's two options, override_settings, infotext, CLI flag and recall.

The job's ratio follows A1111 v1.10 ``StableDiffusionProcessingImg2Img.get_token_merging_ratio``:
``p.token_merging_ratio (0 for the API) or ("token_merging_ratio" in override_settings and
opts.token_merging_ratio) or opts.token_merging_ratio_img2img or opts.token_merging_ratio``. A1111 reads
the infotext key ``Token merging ratio`` back into the option ``token_merging_ratio`` (an override).
"""

from __future__ import annotations

from typing import Any

import pytest

from retouch.cli.options import GENERATION, job_fields
from retouch.cli.recall import fields_from_infotext
from retouch.infotext import parse_infotext
from retouch.params import ParamError
from retouch.server.a1111.options import OptionsStore, default_options
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.a1111.translate import build_submission, token_merging_ratio
from retouch.server.config import ServerConfig

from .conftest import b64, gradient

NAMES = ("tiny.safetensors [0123456789]", "tiny")


def _ratio(server: dict[str, Any] | None = None, **fields: Any) -> float:
    req = Img2ImgRequest(init_images=[b64(gradient())], **fields)
    options = {**default_options(NAMES[0]), **(server or {})}
    return float(build_submission(req, options, ServerConfig(), NAMES).job.token_merging_ratio)


@pytest.mark.parametrize(
    ("options", "overridden", "expected"),
    [
        ({"token_merging_ratio": 0.0, "token_merging_ratio_img2img": 0.0}, (), 0.0),
        ({"token_merging_ratio": 0.2, "token_merging_ratio_img2img": 0.0}, (), 0.2),  # the general one
        ({"token_merging_ratio": 0.2, "token_merging_ratio_img2img": 0.3}, (), 0.3),  # img2img wins
        ({"token_merging_ratio": 0.4, "token_merging_ratio_img2img": 0.3}, ("token_merging_ratio",), 0.4),
        ({"token_merging_ratio": 0.0, "token_merging_ratio_img2img": 0.3}, ("token_merging_ratio",), 0.3),
    ],
)
def test_a1111_img2img_rule(options: dict[str, float], overridden: tuple[str, ...], expected: float) -> None:
    """Row 4: an overridden general ratio beats the img2img option; row 5: an overridden 0 falls through."""
    assert token_merging_ratio(options, overridden) == expected


def test_requests_options_and_overrides() -> None:
    assert _ratio() == 0.0  # off by default, as in A1111
    assert _ratio(override_settings={"token_merging_ratio_img2img": 0.3}) == 0.3
    assert _ratio({"token_merging_ratio": 0.2}) == 0.2
    assert _ratio({"token_merging_ratio": 0.2, "token_merging_ratio_img2img": 0.3}) == 0.3
    assert _ratio({"token_merging_ratio_img2img": 0.3}, override_settings={"token_merging_ratio": 0.5}) == 0.5


def test_infotext_key_recalls_as_the_general_override() -> None:
    """``Token merging ratio: 0.5`` goes into override_settings as token_merging_ratio, so it beats the
    server's img2img option 0.3; a request's own override keeps its value."""
    text = "p\nSteps: 20, Sampler: Euler, Seed: 1, Token merging ratio: 0.5"
    assert _ratio({"token_merging_ratio_img2img": 0.3}, infotext=text) == 0.5
    assert _ratio(infotext=text, override_settings={"token_merging_ratio": 0.25}) == 0.25


@pytest.mark.parametrize("option", ["token_merging_ratio", "token_merging_ratio_img2img"])
def test_bad_ratios_are_refused_with_the_range(option: str) -> None:
    with pytest.raises(ParamError, match=r"override_settings: token_merging_ratio must be in \[0, 1\)"):
        _ratio(override_settings={option: 1.0})
    store = OptionsStore(NAMES[0], NAMES)
    with pytest.raises(ParamError, match=r"options: token_merging_ratio must be in \[0, 1\)"):
        store.update({option: -0.5})
    assert store.update({option: 0.5})[option] == 0.5
    assert store.snapshot()[option] == 0.5


def test_cli_flag_and_recall() -> None:
    """``--token-merging`` sets the job's ratio; recall reads ``Token merging ratio``; typed beats recalled."""
    assert any(p.name == "token_merging" for p in GENERATION)
    recalled = fields_from_infotext(parse_infotext("p\nSteps: 20, Sampler: Euler, Token merging ratio: 0.5"))
    assert recalled["token_merging_ratio"] == 0.5
    assert job_fields({"token_merging": 0.0}, set(), recalled)["token_merging_ratio"] == 0.5
    assert job_fields({"token_merging": 0.25}, {"token_merging"}, recalled)["token_merging_ratio"] == 0.25
    assert job_fields({"token_merging": 0.0}, set(), {})["token_merging_ratio"] == 0.0
