"""Extra-network tags and LoRA multipliers (spec §5.6, cases 36, 43). Case 42 (a tag in the negative prompt
stays literal) is the caller's: negative prompts are never passed to these functions."""

from __future__ import annotations

import pytest

from retouch.params import ParamError
from retouch.prompts import LoraTag, NetworkTag, extra_networks, lora_tag, parse_batch_extra_networks


def _one(tag: str) -> NetworkTag:
    text, tags = extra_networks(tag)
    assert text == "" and len(tags) == 1
    return tags[0]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("<lora:foo:0.7>", LoraTag("foo", 0.7, 0.7, None)),
        ("<lora:foo:0.7:0.3>", LoraTag("foo", 0.7, 0.3, None)),
        ("<lora:foo:te=0.2:unet=0.9>", LoraTag("foo", 0.2, 0.9, None)),
        ("<lora:foo:unet=0.5>", LoraTag("foo", 1.0, 0.5, None)),
        ("<lora:foo:te=0.2>", LoraTag("foo", 0.2, 0.2, None)),
        ("<lora:foo:0.5:te=0.1>", LoraTag("foo", 0.1, 0.1, None)),
        ("<lora:foo>", LoraTag("foo", 1.0, 1.0, None)),
        ("<lora:foo:1:1:8>", LoraTag("foo", 1.0, 1.0, 8)),
        ("<lora:foo:1:dyn=4>", LoraTag("foo", 1.0, 1.0, 4)),
        ("<lora:my lora v2:0.6>", LoraTag("my lora v2", 0.6, 0.6, None)),
        ("<lora:foo:0.8 >", LoraTag("foo", 0.8, 0.8, None)),
        ("<lora:a=b:1>", LoraTag("1", 1.0, 1.0, None)),  # a=b is named, so the name is "1"
        ("<lyco:foo:0.5>", LoraTag("foo", 0.5, 0.5, None)),  # lyco is an alias of lora
        ("<lora:foo:-1>", LoraTag("foo", -1.0, -1.0, None)),
    ],
)
def test_case_36_lora_tag_table(tag: str, expected: LoraTag) -> None:
    assert lora_tag(_one(tag)) == expected


def test_arguments_split_into_positional_and_named() -> None:
    tag = _one("<lora:foo:0.5:te=0.1:x=y=z>")
    assert tag == NetworkTag("lora", ("foo", "0.5", "x=y=z"), {"te": "0.1"}, "<lora:foo:0.5:te=0.1:x=y=z>")


def test_tags_are_replaced_by_nothing_and_unknown_kinds_removed_too() -> None:
    text, tags = extra_networks("a <lora:foo:0.7> b <LORA:foo:1> c <hypernet:h:1>")
    assert text == "a  b  c "
    assert [t.kind for t in tags] == ["lora", "LORA", "hypernet"]
    with pytest.raises(ParamError, match="not a LoRA tag"):
        lora_tag(tags[1])


def test_not_a_tag_stays() -> None:
    for prompt in ["a <lora> b", "a <:x> b", "a <lora:> b", "x < y > z", "<lora:a"]:
        assert extra_networks(prompt) == (prompt, [])


def test_a_tag_may_sit_inside_brackets() -> None:
    assert extra_networks("[a<lora:x:1>:b:0.5]")[0] == "[a:b:0.5]"


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("<lora:x:abc>", "<lora:x:abc>.*'abc' is not a number"),
        ("<lora:x:>", "<lora:x:>.*'' is not a number"),
        ("<lora:x:1:zz>", "unet multiplier 'zz'"),
        ("<lora:x:te=q>", "te multiplier 'q'"),
        ("<lora:x:1:1:1.5>", "dyn '1.5' is not an integer"),
        ("<lora:x:1:dyn=0>", "dyn must be >= 1"),
        ("<lora:x:inf>", "not finite"),
        ("<lora:x:nan>", "not finite"),
        ("<lora:te=1>", "names no network"),
        ("<lora:x:abc:te=1>", "'abc' is not a number"),  # A1111 converts the positional before the override
    ],
)
def test_malformed_multipliers_raise_param_error_naming_the_tag(tag: str, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        lora_tag(_one(tag))


def test_a_hand_built_tag_is_named_in_errors_too() -> None:
    with pytest.raises(ParamError, match="<lora:x:abc>"):
        lora_tag(NetworkTag("lora", ("x", "abc")))


def test_case_43_batch_strips_every_prompt_but_takes_the_first_prompts_tags() -> None:
    prompts, tags = parse_batch_extra_networks(["a <lora:x:1>", "b <lora:y:1>"])
    assert prompts == ["a ", "b "]
    assert [lora_tag(t).name for t in tags] == ["x"]
    assert parse_batch_extra_networks([]) == ([], [])
    assert parse_batch_extra_networks(["plain", "<lora:z>"]) == (["plain", ""], [])

