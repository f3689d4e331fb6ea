"""Infotext writing and parsing (spec §6)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retouch.infotext import PARSE_DEFAULTS, format_infotext, parse_infotext, split_infotext

# The two examples of spec §6.3, verbatim.
EXAMPLE_UI = (
    "a red knitted hat, studio photo\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, "
    "Inpaint area: Only masked, Masked area padding: 32, Version: v1.10.1"
)
EXAMPLE_API = (
    "a red knitted hat\n"
    "Steps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7.0, Seed: 3541926402, Size: 512x512, "
    "Model hash: c6bbc15e32, Model: sd-v1-5-inpainting, Denoising strength: 0.75, Conditional mask weight: "
    "1.0, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 0, Masked content: fill, "
    "Version: v1.10.1"
)


@pytest.mark.parametrize("text", [EXAMPLE_UI, EXAMPLE_API])
def test_spec_examples_round_trip_byte_for_byte(text: str) -> None:
    assert format_infotext(*split_infotext(text)) == text


def test_spec_example_ui_written_from_typed_values() -> None:
    params = {
        "Steps": 20,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": 7,
        "Seed": 1234,
        "Size": "512x512",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Denoising strength": 0.75,
        "Mask blur": 4,
        "Inpaint area": "Only masked",
        "Masked area padding": 32,
        "Version": "v1.10.1",
    }
    assert format_infotext("a red knitted hat, studio photo", "blurry, lowres", params) == EXAMPLE_UI


def test_spec_example_api_floats_keep_their_decimal() -> None:
    params = {
        "Steps": 20,
        "Sampler": "Euler",
        "Schedule type": "Automatic",
        "CFG scale": 7.0,
        "Seed": 3541926402,
        "Size": "512x512",
        "Model hash": "c6bbc15e32",
        "Model": "sd-v1-5-inpainting",
        "Denoising strength": 0.75,
        "Conditional mask weight": 1.0,
        "Mask blur": 4,
        "Inpaint area": "Only masked",
        "Masked area padding": 0,
        "Masked content": "fill",
        "Version": "v1.10.1",
    }
    assert format_infotext("a red knitted hat", "", params) == EXAMPLE_API


def test_parse_ui_example_values() -> None:
    res = parse_infotext(EXAMPLE_UI)
    assert res["Prompt"] == "a red knitted hat, studio photo"
    assert res["Negative prompt"] == "blurry, lowres"
    assert res["Steps"] == "20"
    assert res["Sampler"] == "DPM++ 2M"
    assert res["Schedule type"] == "Karras"
    assert res["CFG scale"] == "7"
    assert res["Size"] == "512x512"
    assert (res["Size-1"], res["Size-2"]) == ("512", "512")
    assert res["Inpaint area"] == "Only masked"
    assert res["Masked area padding"] == "32"
    # absent keys take A1111's defaults
    assert res["Mask mode"] == "Inpaint masked"
    assert res["Masked content"] == "original"
    assert res["Clip skip"] == "1"
    assert res["RNG"] == "GPU"
    assert res["VAE Encoder"] == res["VAE Decoder"] == "Full"


def test_parse_api_example_keeps_given_values_over_defaults() -> None:
    res = parse_infotext(EXAMPLE_API)
    assert res["Negative prompt"] == ""
    assert res["Masked content"] == "fill"
    assert res["Masked area padding"] == "0"
    assert res["Schedule type"] == "Automatic"
    assert res["Conditional mask weight"] == "1.0"
    assert res["Seed"] == "3541926402"


def test_defaults_only_when_absent() -> None:
    res = parse_infotext("p\nSteps: 5, Sampler: Euler, Seed: 1")
    for key, value in PARSE_DEFAULTS.items():
        assert res[key] == value
    assert PARSE_DEFAULTS["Masked area padding"] == "32"
    assert PARSE_DEFAULTS["Inpaint area"] == "Whole picture"


def test_seed_resize_from_is_split() -> None:
    res = parse_infotext("p\nSteps: 5, Seed: 1, Seed resize from: 640x480")
    assert (res["Seed resize from-1"], res["Seed resize from-2"]) == ("640", "480")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("a, b", '"a, b"'),
        ("key: value", '"key: value"'),
        ("two\nlines", '"two\\nlines"'),
        ('say "hi", ok', '"say \\"hi\\", ok"'),
        ("plain", "plain"),
        ("ünïcödé, ja 日本", '"ünïcödé, ja 日本"'),
    ],
)
def test_quoting_of_commas_colons_newlines(value: str, written: str) -> None:
    text = format_infotext("p", "", {"Steps": 1, "Seed": 2, "Note": value})
    assert text == f"p\nSteps: 1, Seed: 2, Note: {written}"
    assert split_infotext(text)[2]["Note"] == value


def test_none_values_omitted_and_bare_key() -> None:
    text = format_infotext("p", "", {"Steps": 20, "Skipped": None, "Tiling": "Tiling", "Seed": 1})
    assert text == "p\nSteps: 20, Tiling, Seed: 1"


def test_empty_prompt_and_params_are_stripped() -> None:
    assert format_infotext("", "neg", {"Steps": 1}) == "Negative prompt: neg\nSteps: 1"
    assert format_infotext("only prompt", "", {}) == "only prompt"


def test_multiline_prompt_and_negative() -> None:
    text = format_infotext("line one\nline two", "bad\nworse", {"Steps": 20, "Seed": 3, "CFG scale": 7})
    assert text == "line one\nline two\nNegative prompt: bad\nworse\nSteps: 20, Seed: 3, CFG scale: 7"
    prompt, negative, params = split_infotext(text)
    assert (prompt, negative) == ("line one\nline two", "bad\nworse")
    assert params == {"Steps": "20", "Seed": "3", "CFG scale": "7"}


def test_non_ascii_prompt_round_trips() -> None:
    text = format_infotext(
        "un chapeau rouge tricoté — 赤い帽子", "flou", {"Steps": 4, "Seed": 9, "Sampler": "Euler"}
    )
    assert split_infotext(text) == (
        "un chapeau rouge tricoté — 赤い帽子",
        "flou",
        {"Steps": "4", "Seed": "9", "Sampler": "Euler"},
    )


def test_short_last_line_belongs_to_the_prompt() -> None:
    # A1111 treats a last line with fewer than 3 pairs as prompt text.
    assert split_infotext("hello\nnote: this") == ("hello\nnote: this", "", {})


def test_legacy_sampler_name_split() -> None:
    res = parse_infotext("p\nSteps: 20, Sampler: DPM++ 2M Karras, Seed: 1")
    assert res["Sampler"] == "DPM++ 2M"
    assert res["Schedule type"] == "Karras"


def test_parse_output_is_json_serialisable() -> None:
    assert json.loads(json.dumps(parse_infotext(EXAMPLE_UI)))["Steps"] == "20"


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20)
# A1111's parser drops a value's surrounding whitespace and decodes any value in double quotes.
_value = _text.map(str.strip).filter(lambda s: not s.startswith('"'))


@given(
    prompt=_text.map(str.strip).filter(lambda s: not s.startswith("Negative prompt:")),
    negative=_text.map(str.strip),
    values=st.lists(
        _value | st.integers() | st.floats(allow_nan=False, allow_infinity=False), min_size=3, max_size=6
    ),
)
def test_round_trip_property(prompt: str, negative: str, values: list[object]) -> None:
    params = {f"Key {i}": v for i, v in enumerate(values)}
    text = format_infotext(prompt, negative, params)
    got_prompt, got_negative, got = split_infotext(text)
    assert got == {k: str(v) for k, v in params.items()}
    assert (got_prompt, got_negative) == (prompt, negative)
