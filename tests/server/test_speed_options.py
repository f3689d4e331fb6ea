"""The speed options through every entry point: A1111 options and infotext (server), CLI flags and recall.

A1111 v1.10.1 reads these infotext keys back into its settings (``OptionInfo(infotext=...)`` in
shared_options.py): ``NGMS`` -> s_min_uncond, ``NGMS all steps`` -> s_min_uncond_all, ``Skip Early CFG`` ->
skip_early_cond, ``Pad conds`` -> pad_cond_uncond, ``Pad conds v0`` -> pad_cond_uncond_v0; flags are
written ``True``. The feature cache keys are Retouch's own.
"""

from __future__ import annotations

from typing import Any

import pytest

from retouch.cli.options import job_fields
from retouch.cli.recall import fields_from_infotext
from retouch.infotext import parse_infotext
from retouch.params import ParamError
from retouch.server.a1111.options import default_options
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.a1111.translate import build_submission
from retouch.server.api.schemas import JobRequest
from retouch.server.config import ServerConfig

from .conftest import b64, gradient

NAMES = ("tiny.safetensors [0123456789]", "tiny")
SPEED_TEXT = (
    "p\nSteps: 20, Sampler: Euler, Seed: 1, Size: 64x64, Denoising strength: 0.5, NGMS: 2.5, "
    "NGMS all steps: True, Skip Early CFG: 0.25, Pad conds: True, Feature cache interval: 3, "
    "Feature cache depth: 2"
)


def _build(cls: type[Img2ImgRequest] = Img2ImgRequest, **fields: Any) -> Any:
    req = cls(init_images=[b64(gradient())], **fields)
    return build_submission(req, default_options(NAMES[0]), ServerConfig(), NAMES).job


def test_options_are_off_by_default_as_in_a1111() -> None:
    job = _build()
    assert (job.s_min_uncond, job.s_min_uncond_all, job.skip_early_cond) == (0.0, False, 0.0)
    assert (job.pad_cond_uncond, job.pad_cond_uncond_v0, job.feature_cache_interval) == (False, False, 0)


def test_override_settings_set_the_job_fields() -> None:
    job = _build(override_settings={"s_min_uncond": 1.5, "s_min_uncond_all": True, "skip_early_cond": 0.2,
                                    "pad_cond_uncond_v0": True})
    assert (job.s_min_uncond, job.s_min_uncond_all, job.skip_early_cond, job.pad_cond_uncond_v0) == (
        1.5, True, 0.2, True)
    with pytest.raises(ParamError, match="skip_early_cond"):
        _build(override_settings={"skip_early_cond": 2.0})


def test_infotext_keys_become_settings_as_in_a1111() -> None:
    job = _build(infotext=SPEED_TEXT)
    assert (job.s_min_uncond, job.s_min_uncond_all, job.skip_early_cond, job.pad_cond_uncond) == (
        2.5, True, 0.25, True)
    assert job.feature_cache_interval == 0  # A1111's schema has no feature cache fields
    job = _build(JobRequest, infotext=SPEED_TEXT)
    assert (job.feature_cache_interval, job.feature_cache_depth) == (3, 2)
    with pytest.raises(ParamError, match="Pad conds value 'yes' must be True or False"):
        _build(infotext="p\nSteps: 20, Sampler: Euler, Seed: 1, Pad conds: yes")


def test_cli_recall_and_flags() -> None:
    recalled = fields_from_infotext(parse_infotext(SPEED_TEXT))
    assert {k: recalled[k] for k in ("s_min_uncond", "s_min_uncond_all", "skip_early_cond", "pad_cond_uncond",
                                     "feature_cache_interval", "feature_cache_depth")} == {
        "s_min_uncond": 2.5, "s_min_uncond_all": True, "skip_early_cond": 0.25, "pad_cond_uncond": True,
        "feature_cache_interval": 3, "feature_cache_depth": 2}
    opts = {"ngms": 0.0, "ngms_all_steps": False, "skip_early_cfg": 0.5, "pad_conds": False,
            "pad_conds_v0": True, "feature_cache": 2, "feature_cache_depth": 1}
    fields = job_fields(opts, {"skip_early_cfg", "feature_cache"}, recalled)
    assert fields["skip_early_cond"] == 0.5 and fields["feature_cache_interval"] == 2  # typed beats recalled
    assert fields["s_min_uncond"] == 2.5 and fields["pad_cond_uncond_v0"] is True
