"""What the script recipes share: progress across engine runs, skip tracking, script infotext keys.

A script runs ``Engine.run`` several times (one call per tile batch or per loop). Progress follows
A1111's ``state``: the script sets ``job_count`` to the number of ``process_images`` calls and each call
counts as one job, so :class:`Steps` renumbers every call's ``StepInfo.job_no`` into that total.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from retouch.engine import Result, StepCallback, StepInfo, StopCheck
from retouch.infotext import format_infotext, split_infotext
from retouch.params import Img2Img

__all__ = ["Runner", "Steps", "SkipWatch", "with_script_params", "Hooks"]


class Runner(Protocol):
    """What a recipe needs of an engine: ``Engine.run``'s signature."""

    def run(self, job: Img2Img, on_step: StepCallback | None = None, should_stop: StopCheck | None = None,
            should_skip: StopCheck | None = None) -> Result:
        ...


@dataclass(frozen=True)
class Hooks:
    """The caller's ``Engine.run`` hooks, passed unchanged through a recipe."""

    on_step: StepCallback | None = None
    should_stop: StopCheck | None = None
    should_skip: StopCheck | None = None

    def stopped(self) -> bool:
        return bool(self.should_stop is not None and self.should_stop())


class Steps:
    """``on_step`` for engine call ``index`` of ``total``: job_no = index, job_count = total."""

    def __init__(self, on_step: StepCallback | None, total: int) -> None:
        self.on_step = on_step
        self.total = total

    def for_call(self, index: int) -> StepCallback | None:
        if self.on_step is None:
            return None
        target = self.on_step

        def forward(info: StepInfo) -> None:
            target(replace(info, job_no=index + info.job_no, job_count=self.total))

        return forward


class SkipWatch:
    """Forwards ``should_skip`` and remembers whether it fired during the current engine call
    (A1111's ``state.skipped``, which a script reads right after ``process_images``)."""

    def __init__(self, should_skip: StopCheck | None) -> None:
        self._inner = should_skip
        self.fired = False

    def start_call(self) -> Callable[[], bool]:
        self.fired = False
        return self

    def __call__(self) -> bool:
        value = bool(self._inner is not None and self._inner())
        self.fired = self.fired or value
        return value


def with_script_params(infotext: str, extras: Mapping[str, Any]) -> str:
    """``infotext`` with a script's ``extra_generation_params`` added where A1111 writes them.

    A script sets its keys before ``process_images``, so in A1111's ordered dict they come before the
    keys ``init()`` and the sampler add (mask blur, masked content, sigma settings...): right after the
    fixed list, which ends with "RNG" here.
    """
    prompt, negative, params = split_infotext(infotext)
    out: dict[str, Any] = {}
    placed = False
    for key, value in params.items():
        out[key] = value
        if key == "RNG":
            out.update(extras)
            placed = True
    if not placed:
        out = {**{k: v for k, v in out.items() if k != "Version"}, **extras,
               **({"Version": out["Version"]} if "Version" in out else {})}
    return format_infotext(prompt, negative, out)
