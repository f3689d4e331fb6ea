"""``retouch inpaint --soft-inpainting`` and the other soft-mask options (spec soft-masks.md §5.2-§5.3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from retouch.cli.soft_options import soft_fields
from retouch.formats.png import read_infotext
from retouch.infotext import parse_infotext
from retouch.params import DifferentialDiffusion, SoftInpainting

from .conftest import Run, box_mask, noise_image

FAST = ["--steps", "2"]


def test_soft_inpainting_writes_the_keys_and_reruns_identically(tmp_path: Path, cli: Callable[..., Run]) -> None:
    """The 7 A1111 keys (values as typed: 2.5, 0.5 default, 4 default ...) before Mask blur, and
    ``--from-infotext`` re-runs the same job byte for byte."""
    image = noise_image(tmp_path / "in.png")
    mask = box_mask(tmp_path / "mask.png", (32, 32), (8, 8, 24, 24))
    out = tmp_path / "out"
    run = cli("inpaint", image, "--mask", mask, "--seed", "7", *FAST, "--soft-inpainting",
              "--soft-schedule-bias", "2.5", "--keep-unmasked-exact", "-o", out)
    assert run.code == 0, run.err
    first = out / "00001-7.png"
    text = read_infotext(first) or ""
    assert ("Soft inpainting enabled: True, Soft inpainting schedule bias: 2.5, Soft inpainting preservation "
            "strength: 0.5, Soft inpainting transition contrast boost: 4, Soft inpainting mask influence: 0, "
            "Soft inpainting difference threshold: 0.5, Soft inpainting difference contrast: 2, Mask blur: 4") in text
    assert parse_infotext(text)["Keep unmasked exact"] == "True"
    again = cli("inpaint", image, "--mask", mask, "--from-infotext", first, "-o", out)
    assert again.code == 0, again.err
    assert (out / "00002-7.png").read_bytes() == first.read_bytes()


def test_soft_fields_precedence() -> None:
    """defaults < infotext < typed options; a typed setting on top of a recalled soft job keeps the rest."""
    recalled = {"soft_inpainting": SoftInpainting(mask_blend_scale=2), "seam_radius": 8}
    fields = soft_fields({"soft_schedule_bias": 3.0, "seam_radius": 32}, {"soft_schedule_bias"}, recalled)
    assert fields["soft_inpainting"] == SoftInpainting(mask_blend_power=3.0, mask_blend_scale=2)
    assert fields["seam_radius"] == 8  # recalled wins over an untyped default
    dd = soft_fields({"differential": True, "dd_strength": 0.5}, {"differential", "dd_strength"}, {})
    assert dd["differential_diffusion"] == DifferentialDiffusion(strength=0.5)
    assert "soft_inpainting" not in soft_fields({"soft_schedule_bias": 3.0}, set(), {})


def test_bad_soft_values_are_one_line_errors(tmp_path: Path, cli: Callable[..., Run]) -> None:
    image = noise_image(tmp_path / "in.png")
    mask = box_mask(tmp_path / "mask.png", (32, 32), (8, 8, 24, 24))
    run = cli("inpaint", image, "--mask", mask, "--soft-inpainting", "--soft-mask-influence", "2", "-o", tmp_path)
    assert run.code == 2 and "soft_inpainting.composite_mask_influence must be in [0.0, 1.0]" in run.err
    run = cli("inpaint", image, "--mask", mask, "--soft-inpainting", "--differential", "-o", tmp_path)
    assert run.code == 2 and "cannot be combined" in run.err
    run = cli("inpaint", image, "--mask", mask, "--seam-correction", "poisson", "-o", tmp_path)
    assert run.code == 2 and "seam_correction must be one of 'none', 'lowfreq'" in run.err
