"""A1111's img2img scripts as recipes over ``Engine.run``: SD upscale and Loopback.

:func:`parse_script` turns A1111's ``script_name`` / ``script_args`` (positional, as its API takes
them; missing trailing arguments take the script's UI defaults, as A1111's API fills them) into a
:class:`ScriptCall`; :func:`run_script` runs it. :data:`SCRIPT_INFO` describes the arguments as
A1111's ``/sdapi/v1/script-info`` does (label, value, minimum, maximum, step, choices). Names are
matched case-insensitively on the script's title, as A1111 does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retouch.engine import Result
from retouch.imaging.tiles import tile_grid
from retouch.imaging.upscale import UPSCALERS
from retouch.params import Img2Img, ParamError
from retouch.recipes.common import Hooks, Runner
from retouch.recipes.loopback import CURVES, MAX_LOOPS, Loopback, loop_strengths, run_loopback
from retouch.recipes.sd_upscale import SDUpscale, check_sd_upscale, run_sd_upscale, upscaled_size

__all__ = [
    "SCRIPT_TITLES", "SCRIPT_INFO", "ScriptCall", "parse_script", "run_script", "check_script", "script_job_count",
    "Hooks", "SDUpscale", "Loopback", "loop_strengths", "upscaled_size",
]

#: A1111's script titles; their lower-case forms are the names ``/sdapi/v1/scripts`` lists.
SCRIPT_TITLES = ("SD upscale", "Loopback")

_SD_UPSCALE_NOTE = (
    '<p style="margin-bottom:0.75em">Will upscale the image by the selected scale factor; '
    "use width and height sliders to set tile size</p>"
)


def _arg(label: str, value: Any, minimum: Any = None, maximum: Any = None, step: Any = None,
         choices: list[str] | None = None) -> dict[str, Any]:
    return {"label": label, "value": value, "minimum": minimum, "maximum": maximum, "step": step,
            "choices": choices}


#: ``/sdapi/v1/script-info`` entries (A1111's ``ScriptInfo``), with only the choices Retouch supports.
SCRIPT_INFO: tuple[dict[str, Any], ...] = (
    {"name": "sd upscale", "is_alwayson": False, "is_img2img": True, "args": [
        _arg("", _SD_UPSCALE_NOTE),
        _arg("Tile overlap", 64, 0, 256, 16),
        _arg("Upscaler", UPSCALERS[0], choices=list(UPSCALERS)),
        _arg("Scale Factor", 2.0, 1.0, 4.0, 0.05),
    ]},
    {"name": "loopback", "is_alwayson": False, "is_img2img": True, "args": [
        _arg("Loops", 4, 1, MAX_LOOPS, 1),
        _arg("Final denoising strength", 0.5, 0, 1, 0.01),
        _arg("Denoising strength curve", "Linear", choices=list(CURVES)),
        _arg("Append interrogated prompt at each iteration", "None", choices=["None"]),
    ]},
)


@dataclass(frozen=True)
class ScriptCall:
    """One parsed script request: the title and its checked arguments."""

    title: str
    args: SDUpscale | Loopback


def _defaults(title: str) -> list[Any]:
    info = next(i for i in SCRIPT_INFO if i["name"] == title.lower())
    return [a["value"] for a in info["args"]]


def parse_script(name: str, args: list[Any] | tuple[Any, ...]) -> ScriptCall:
    """``script_name`` + ``script_args`` -> ScriptCall; ParamError naming the scripts or the bad argument."""
    title = next((t for t in SCRIPT_TITLES if t.lower() == name.strip().lower()), None)
    if title is None:
        names = ", ".join(repr(t.lower()) for t in SCRIPT_TITLES)
        raise ParamError(f"script_name {name!r} is not supported; this server runs the img2img scripts {names}")
    values = list(args)
    defaults = _defaults(title)
    if len(values) > len(defaults):
        labels = ", ".join(a["label"] or "(info)" for a in SCRIPT_INFO[SCRIPT_TITLES.index(title)]["args"])
        raise ParamError(f"script_args: {title} takes at most {len(defaults)} arguments ({labels}); got {len(values)}")
    values += defaults[len(values):]
    if title == "SD upscale":
        return ScriptCall(title, SDUpscale(overlap=_int(values[1], "overlap"), upscaler=values[2],
                                           scale=_number(values[3], "scale factor")))
    return ScriptCall(title, Loopback(loops=_int(values[0], "loops"),
                                      final_denoising_strength=_number(values[1], "final denoising strength"),
                                      denoising_curve=str(values[2]), append_interrogation=str(values[3])))


def _int(value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(f"script_args: {what} must be a whole number; got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(f"script_args: {what} must be a number; got {value!r}")
    return float(value)


def check_script(job: Img2Img, call: ScriptCall) -> None:
    """Refuse a script job that cannot run, before anything is queued."""
    if isinstance(call.args, SDUpscale):
        check_sd_upscale(job, call.args)


def script_job_count(job: Img2Img, call: ScriptCall) -> int:
    """How many ``Engine.run`` calls the script makes (A1111's ``state.job_count`` for it)."""
    if isinstance(call.args, Loopback):
        return call.args.loops * job.n_iter
    w, h = upscaled_size(job.init_images[0].size, call.args)
    tiles = tile_grid(w, h, job.width, job.height, call.args.overlap).count
    return -(-tiles // job.batch_size) * job.n_iter


def run_script(engine: Runner, job: Img2Img, call: ScriptCall, hooks: Hooks | None = None,
               return_grid: bool = True) -> Result:
    """Run ``call`` on ``job``."""
    if isinstance(call.args, SDUpscale):
        return run_sd_upscale(engine, job, call.args, hooks)
    return run_loopback(engine, job, call.args, hooks, return_grid=return_grid)
