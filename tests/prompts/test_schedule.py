"""Prompt editing and alternation (spec §1.4-§1.7, §1.9; cases 1-15).

Expected values are A1111 v1.10.1's (``get_learned_conditioning_prompt_schedules`` with lark 1.1.2);
the ones beyond spec §7 were measured the same way, under PYTHONHASHSEED 0-5, all equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from retouch.params import ParamError
from retouch.prompts import conditioning_index, prompt_schedule, prompt_schedules


def g(prompt: str, steps: int = 10, hires: int | None = None, old: bool = False) -> list[list]:
    return [list(e) for e in prompt_schedule(prompt, steps, hires_steps=hires, use_old_scheduling=old)]


ALT10 = [[t, "a" if t % 2 else "(b:1.1)"] for t in range(1, 11)]

CASES = [
    # spec §7
    ("a [b:c:0.5] d", 10, None, [[5, "a b d"], [10, "a c d"]]),  # 1
    ("a [b:c:10] d", 20, None, [[10, "a b d"], [20, "a c d"]]),  # 2
    ("a [b:c:10] d", 10, None, [[10, "a b d"]]),
    ("a [b::0.5] d", 10, None, [[5, "a b d"], [10, "a  d"]]),  # 3
    ("a [:b:0.5] d", 10, None, [[5, "a  d"], [10, "a b d"]]),
    ("a [b:0.5] d", 10, None, [[5, "a  d"], [10, "a b d"]]),
    ("[a|b|c] x", 5, None, [[1, "a x"], [2, "b x"], [3, "c x"], [4, "a x"], [5, "b x"]]),  # 4
    ("[fe|]male", 10, None, [[t, "female" if t % 2 else "male"] for t in range(1, 11)]),  # 5
    ("a [b:c:1.0] d", 10, None, [[10, "a b d"]]),  # 6
    ("a [b:c:1] d", 10, None, [[1, "a b d"], [10, "a c d"]]),
    ("[a:b:3.7]", 10, None, [[10, "a"]]),  # 7
    ("a [b:c:0] d", 10, None, [[10, "a c d"]]),  # 8
    ("a [b:c:-1] d", 10, None, [[10, "a c d"]]),
    ("a [b:c:0.05] d", 10, None, [[10, "a c d"]]),
    ("a [b:c:0.5] d", 20, 10, [[10, "a c d"]]),  # 9
    ("a [b:c:1.5] d", 20, 10, [[5, "a b d"], [10, "a c d"]]),
    ("a [b:c:25] d", 20, 10, [[5, "a b d"], [10, "a c d"]]),
    ("a[b:[c:d:2]:1]e", 10, None, [[1, "abe"], [2, "ace"], [10, "ade"]]),  # 10
    ("[[a|b]:c:0.5]", 4, None, [[1, "a"], [2, "b"], [3, "c"], [4, "c"]]),
    ("a | b [c:d:0.5]", 10, None, [[10, "a | b [c:d:0.5]"]]),  # 11
    ("[a:b:c:0.5]", 10, None, [[10, "[a:b:c:0.5]"]]),
    ("a (b|c) [c:d:0.5]", 10, None, [[10, "a (b|c) [c:d:0.5]"]]),
    ("a [{b|d{:.5] c", 10, None, [[10, "a [{b|d{:.5] c"]]),  # 12: the doctest in A1111's file is stale
    # spec §1.4-§1.6
    ("[a|b:c:0.5]", 10, None, [[10, "[a|b:c:0.5]"]]),
    ("[a:b|c:0.5]", 10, None, [[10, "[a:b|c:0.5]"]]),
    ("a [b:c:0.5", 10, None, [[10, "a [b:c:0.5"]]),
    ("[a:b:0.5]", 10, None, [[5, "a"], [10, "b"]]),
    ("[a:b:15]", 10, None, [[10, "a"]]),
    ("[a:b:1e1]", 20, None, [[10, "a"], [20, "b"]]),
    ("[a:b:0.5]", 1, None, [[1, "b"]]),
    ("a [b:c:15] d", 20, 10, [[10, "a c d"]]),
    ("a [b:c:5] d", 20, 10, [[10, "a c d"]]),
    ("[a: b :0.5]", 10, None, [[5, "a"], [10, " b "]]),
    ("a [b : c : 1] d", 10, None, [[1, "a b  d"], [10, "a  c  d"]]),
    # the doctests of A1111's prompt_parser.py (all but the stale one), measured under lark 1.1.2
    ("test", 10, None, [[10, "test"]]),
    ("a [b:3]", 10, None, [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", 10, None, [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", 10, None, [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", 10, None, [[3, ""], [10, "(a:2)"]]),
    ("a [unbalanced", 10, None, [[10, "a [unbalanced"]]),
    ("a [b:.5] c", 10, None, [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", 10, None, [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", 10, None, ALT10),
    ("[fe|||]male", 10, None, [[t, "female" if t % 4 == 1 else "male"] for t in range(1, 11)]),
    ("a [b:.5] c", 10, 10, [[10, "a b c"]]),
    ("a [b:1.5] c", 10, 10, [[5, "a  c"], [10, "a b c"]]),
    # more, measured
    ("", 10, None, [[10, ""]]),
    ("[a AND b:c:0.5]", 10, None, [[5, "a AND b"], [10, "c"]]),  # AND is split before this stage (§1.2)
    ("(a:1.2) [b:(c:1.3):0.5] \\[x\\] [y]", 10, None,
     [[5, "(a:1.2) b \\[x\\] [y]"], [10, "(a:1.2) (c:1.3) \\[x\\] [y]"]]),
    ("[a|]", 4, None, [[1, "a"], [2, ""], [3, "a"], [4, ""]]),
    ("[|a]", 4, None, [[1, ""], [2, "a"], [3, ""], [4, "a"]]),
    ("[a:b:+0.5]", 10, None, [[5, "a"], [10, "b"]]),
    ("[a:b:5.]", 10, None, [[10, "a"]]),
    ("[a:b:.5e1]", 10, None, [[10, "a"]]),
    ("[a:b: 0.5 ]", 10, None, [[5, "a"], [10, "b"]]),
    ("[a:b:\n0.5]", 10, None, [[5, "a"], [10, "b"]]),
]


@pytest.mark.parametrize(("prompt", "steps", "hires", "expected"), CASES)
def test_cases_1_to_12_schedules(prompt: str, steps: int, hires: int | None, expected: list) -> None:
    assert g(prompt, steps, hires) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a [b:c:1.0] d", [[1, "a b d"], [10, "a c d"]]),  # case 6, old timelines
        ("a [b:c:1] d", [[1, "a b d"], [10, "a c d"]]),
        ("[a:b:3.7]", [[3, "a"], [10, "b"]]),  # case 7, old timelines
    ],
)
def test_old_scheduling(prompt: str, expected: list) -> None:
    assert g(prompt, 10, old=True) == expected
    assert g(prompt, 20, hires=10, old=True) == g(prompt, 20, old=True)  # old rule ignores the hires offsets


# Case 13 / spec §1.9: the prompts whose A1111 result depends on PYTHONHASHSEED under lark 1.1.2, and
# Retouch's one answer for them (module docstring of retouch.prompts.schedule).
AMBIGUOUS = [
    ("[b:c:0.5]) x", [[5, "b) x"], [10, "c) x"]]),
    ("[b:c:0.5]:", [[5, "b:"], [10, "c:"]]),
    ("[a:b:0.5]:", [[5, "a:"], [10, "b:"]]),
    ("x [a:b:0.5]: y", [[5, "x a: y"], [10, "x b: y"]]),
    ("x [a:b:0.5]) y", [[5, "x a) y"], [10, "x b) y"]]),
    ("[a:b:0.5]::", [[5, "a::"], [10, "b::"]]),
    ("[a:b:0.5]]])", [[5, "a]])"], [10, "b]])"]]),
    ("0.5  [:d:0.7])a", [[7, "0.5  )a"], [10, "0.5  d)a"]]),
]


@pytest.mark.parametrize(("prompt", "expected"), AMBIGUOUS)
def test_case_13_hash_dependent_prompts_get_the_documented_answer(prompt: str, expected: list) -> None:
    assert g(prompt) == expected


def test_case_13_the_answer_does_not_depend_on_pythonhashseed() -> None:
    code = (
        "import json, sys\n"
        "from retouch.prompts import prompt_schedule\n"
        "print(json.dumps([prompt_schedule(p, 10) for p in json.loads(sys.argv[1])]))\n"
    )
    prompts = [p for p, _ in AMBIGUOUS] + ["a [b:c:0.5] d", "[a|b] (c:1.2) [d::3]"]
    outputs = set()
    for seed in ("0", "1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", code, json.dumps(prompts)], env=env,
                             capture_output=True, text=True, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1
    got = json.loads(outputs.pop())
    assert got[: len(AMBIGUOUS)] == [e for _, e in AMBIGUOUS]


def test_parser_is_built_lazily_not_at_import() -> None:
    code = (
        "import sys, retouch.prompts, retouch.prompts.schedule as s\n"
        "assert 'lark' not in sys.modules and s._parser.cache_info().currsize == 0\n"
        "s.prompt_schedule('no brackets', 5)\n"
        "assert 'lark' not in sys.modules\n"  # prompts that cannot hold an edit skip the parser
        "s.prompt_schedule('[a:b:2]', 5); s.prompt_schedule('[a|b]', 5)\n"
        "assert s._parser.cache_info().misses == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _random_prompts(n: int, seed: int) -> list[str]:
    import random

    r = random.Random(seed)
    atoms = ["cat", " ", ", ", "(", ")", "[", "]", ":", "|", "0.5", "3", "1e1", ".5", "\\(", "\\", "\n",
             "(red:1.2)", "[x]", ":0.2)", "::", "+2"]
    return ["".join(r.choice(atoms) for _ in range(r.randint(1, 12))) for _ in range(n)]


@pytest.mark.parametrize("prompt", ["a (b:1.2) c", "a [b] (c) \\[ d", "a | b ( c", "x [y] z", "[a]: b)", "((a][:b:c"])
def test_prompts_without_edits_are_themselves(prompt: str) -> None:
    from retouch.prompts.schedule import _may_edit, _parse

    assert not _may_edit(prompt) and g(prompt) == [[10, prompt]]
    parts = _parse(prompt)  # the full parse agrees with the shortcut
    assert parts is None or "".join(parts) == prompt


def test_the_parser_shortcut_is_safe() -> None:
    from retouch.prompts.schedule import _may_edit, _parse

    skipped = [p for p in _random_prompts(200, 11) if not _may_edit(p)]
    assert len(skipped) > 50
    for prompt in skipped:
        parts = _parse(prompt)
        assert parts is None or all(isinstance(x, str) for x in parts) and "".join(parts) == prompt, prompt


def test_batch_computes_identical_prompts_once_and_keeps_order() -> None:
    assert prompt_schedules(["[a:b:0.5]", "x", "[a:b:0.5]"], 10) == [
        [(5, "a"), (10, "b")], [(10, "x")], [(5, "a"), (10, "b")],
    ]
    first, _, third = prompt_schedules(["[a:b:0.5]", "x", "[a:b:0.5]"], 10)
    assert first is not third  # callers may mutate one without touching the other


@pytest.mark.parametrize("when", ["1e999", "1.0e999", "-1e999"])
def test_step_out_of_range_raises_param_error(when: str) -> None:
    with pytest.raises(ParamError, match=when):
        prompt_schedule(f"[a:b:{when}]", 10)


@pytest.mark.parametrize(("steps", "hires"), [(0, None), (10, 0), (-1, None)])
def test_steps_must_be_positive(steps: int, hires: int | None) -> None:
    with pytest.raises(ParamError, match="steps"):
        prompt_schedule("a", steps, hires_steps=hires)


def _texts(prompt: str, steps: int, calls: int) -> list[str]:
    sched = prompt_schedule(prompt, steps)
    ends = [end for end, _ in sched]
    return [sched[conditioning_index(ends, k)][1] for k in range(calls)]


def test_case_14_per_call_text() -> None:
    assert _texts("[a:b:0.5]", 10, 10) == ["a"] * 6 + ["b"] * 4
    assert _texts("[a|b]", 10, 10) == list("aababababa")
    assert _texts("[a:b:0.5]", 10, 14) == ["a"] * 6 + ["b"] * 5 + ["a"] * 3  # past the end: entry 0


def test_case_15_img2img_schedule_is_for_the_requested_steps() -> None:
    # steps 20, Euler: denoise 0.5 runs 11 calls, 0.75 runs 16; the schedule is built for 20.
    assert _texts("[a:b:0.5]", 20, 11) == ["a"] * 11
    assert _texts("[a:b:0.5]", 20, 16) == ["a"] * 11 + ["b"] * 5


def test_conditioning_index_edges() -> None:
    assert conditioning_index([10], 0) == 0
    assert conditioning_index([3, 10], 3) == 0 and conditioning_index([3, 10], 4) == 1
    assert conditioning_index([3, 10], 11) == 0
    assert conditioning_index([], 0) == 0
