"""A1111-compatible routes under ``/sdapi/v1`` (spec §5.1-§5.6)."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from retouch.formats.images import ImageDecodeError, decode_base64_image, encode_png_base64
from retouch.formats.png import read_infotext
from retouch.imaging.upscale import UPSCALERS
from retouch.infotext import parse_infotext
from retouch.params import ParamError
from retouch.recipes import SCRIPT_INFO, SCRIPT_TITLES
from retouch.sampling import registry
from retouch.server.a1111.options import Options
from retouch.server.a1111.schemas import (
    ErrorResponse,
    Img2ImgRequest,
    Img2ImgResponse,
    PngInfoRequest,
    PngInfoResponse,
    ProgressResponse,
    ProgressState,
    PromptStyleItem,
    SamplerItem,
    SchedulerItem,
    ScriptInfo,
    ScriptsList,
    SDModelItem,
    UpscalerItem,
)
from retouch.server.a1111.translate import Submission, build_submission
from retouch.server.jobs import Job, JobStatus
from retouch.server.state import ServerState

__all__ = ["router", "get_state", "submit"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 409, 413, 422, 429, 500)
}
router = APIRouter(prefix="/sdapi/v1", tags=["A1111"], responses=_ERRORS)


def get_state(request: Request) -> ServerState:
    return request.app.state.server  # type: ignore[no-any-return]


async def submit(state: ServerState, req: Img2ImgRequest, *, retain: bool) -> Job:
    """Check ``req`` (off the event loop: it decodes images) and queue it; 422/429 on failure."""
    state.queue.check_room()  # a full queue answers 429 before any image is decoded
    sub: Submission = await run_in_threadpool(
        build_submission, req, state.options.snapshot(), state.config, state.options.model_names, state.styles
    )
    try:
        return state.queue.submit(sub, job_count=sub.job_count, job_id=req.force_task_id, retain=retain)
    except ValueError as e:
        raise ParamError(f"force_task_id: {e}") from None


@router.post("/img2img", response_model=Img2ImgResponse)
async def img2img(req: Img2ImgRequest, state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Run an img2img/inpaint job and wait for it (queued FIFO behind other jobs)."""
    job = await submit(state, req, retain=False)
    result: dict[str, Any] = await asyncio.wrap_future(job.future)
    return result


def _state_of(job: Job | None) -> ProgressState:
    if job is None:
        return ProgressState()
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(job.started or job.created))
    return ProgressState(
        skipped=job.skipped, interrupted=job.interrupted, stopping_generation=job.cancel_requested,
        job=job.id, job_count=job.job_count, job_timestamp=stamp, job_no=job.job_no,
        sampling_step=job.sampling_step, sampling_steps=job.sampling_steps,
    )


def progress_of(job: Job | None, *, want_image: bool) -> ProgressResponse:
    """Spec §5.6 for ``job`` (None: idle, all zero)."""
    if job is None:
        return ProgressResponse(progress=0.0, eta_relative=0.0, state=_state_of(None))
    image = None
    if want_image:
        job.preview_wanted = job.status is JobStatus.RUNNING
        preview = job.preview
        image = encode_png_base64(preview, None) if preview is not None else None
    return ProgressResponse(
        progress=job.progress(), eta_relative=job.eta_relative(), state=_state_of(job), current_image=image,
        textinfo=None,
    )


@router.get("/progress", response_model=ProgressResponse)
async def progress(
    skip_current_image: bool = Query(False), state: ServerState = Depends(get_state)
) -> ProgressResponse:
    """Progress of the running job (spec §5.6 formula); idle: 0 with job_count 0."""
    return progress_of(state.queue.current, want_image=not skip_current_image)


@router.post("/interrupt")
async def interrupt(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Stop the running job within one sampler step; it returns its partial images."""
    state.queue.interrupt()
    return {}


@router.post("/skip")
async def skip(state: ServerState = Depends(get_state)) -> None:
    """End the running job's current batch; the next batch (n_iter) still runs."""
    state.queue.skip()
    return None


#: Display metadata A1111 gives schedule types (spec §3.4): default rho, and whether the schedule is
#: built from the model's own sigmas.
_DEFAULT_RHO = {"karras": 7.0, "polyexponential": 1.0}
_NEEDS_MODEL = frozenset({"uniform", "sgm_uniform", "simple", "normal", "ddim"})


def _sampler_options(spec: registry.SamplerSpec) -> dict[str, str]:
    """A1111's per-sampler ``options``: strings, only the ones that apply."""
    options = {"scheduler": spec.default_scheduler} if spec.default_scheduler else {}
    flags = {
        "second_order": spec.second_order,
        "discard_next_to_last_sigma": spec.discard_next_to_last_sigma,
        "uses_ensd": spec.uses_ensd,
    }
    options.update({k: "True" for k, v in flags.items() if v})
    return options  # type: ignore[return-value]


@router.get("/samplers", response_model=list[SamplerItem])
async def samplers() -> list[SamplerItem]:
    """Every sampler ``sampler_name`` accepts, in A1111's order, with its aliases."""
    return [
        SamplerItem(name=spec.name, aliases=list(spec.aliases), options=_sampler_options(spec))
        for spec in registry.SAMPLERS.values()
    ]


@router.get("/schedulers", response_model=list[SchedulerItem])
async def schedulers() -> list[SchedulerItem]:
    """Every schedule type ``scheduler`` accepts (by name or label)."""
    return [
        SchedulerItem(
            name=name, label=label, aliases=None, default_rho=_DEFAULT_RHO.get(name, -1.0),
            need_inner_model=name in _NEEDS_MODEL,
        )
        for name, (label, _) in registry.SCHEDULERS.items()
    ]


@router.get("/sd-models", response_model=list[SDModelItem])
async def sd_models(state: ServerState = Depends(get_state)) -> list[SDModelItem]:
    return [
        SDModelItem(title=m.title, model_name=m.model_name, hash=m.hash, sha256=None, filename=m.filename)
        for m in state.models
    ]


@router.get("/options")
async def get_options(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """The supported subset of A1111's options with their current values."""
    return state.options.snapshot()


@router.post("/options")
async def set_options(body: Options = Body(...), state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Change server defaults for jobs submitted later (never a queued or running job)."""
    raw = {k: v for k, v in body.model_dump(exclude_unset=True).items()}
    raw.update(body.model_extra or {})
    state.options.update(raw)
    return {}


@router.get("/scripts", response_model=ScriptsList)
async def scripts() -> ScriptsList:
    """The selectable img2img scripts this server runs (A1111 lists script names in lower case)."""
    return ScriptsList(txt2img=[], img2img=[t.lower() for t in SCRIPT_TITLES])


@router.get("/script-info", response_model=list[ScriptInfo])
async def script_info() -> list[ScriptInfo]:
    """Each supported script's arguments as A1111 describes them (label, value, range, choices)."""
    return [ScriptInfo.model_validate(info) for info in SCRIPT_INFO]


@router.get("/upscalers", response_model=list[UpscalerItem])
async def upscalers() -> list[UpscalerItem]:
    """The built-in upscalers SD upscale accepts, with A1111's fields (no model files, scale 4)."""
    return [UpscalerItem(name=name, model_name=None, model_path=None, model_url=None, scale=4) for name in UPSCALERS]


@router.get("/prompt-styles", response_model=list[PromptStyleItem])
async def prompt_styles(state: ServerState = Depends(get_state)) -> list[PromptStyleItem]:
    """The saved prompt styles (``--styles-file``), in file order; empty without a styles file."""
    return [PromptStyleItem(name=st.name, prompt=st.prompt, negative_prompt=st.negative_prompt)
            for st in state.styles.values()]


def _png_info(data: str, max_pixels: int) -> PngInfoResponse:
    if not data.strip():
        return PngInfoResponse(info="", items={}, parameters={})
    try:
        image = decode_base64_image(data, max_pixels=max_pixels)
    except ImageDecodeError as e:
        raise ParamError(f"image: {e}") from None
    text = read_infotext(image) or ""
    items = {
        str(k): v for k, v in image.info.items()
        if k != "parameters" and (isinstance(v, str | int) or isinstance(v, float) and math.isfinite(v))
    }
    params = parse_infotext(text) if text else {}
    return PngInfoResponse(info=text, items=items, parameters=params)


@router.post("/png-info", response_model=PngInfoResponse)
async def png_info(req: PngInfoRequest, state: ServerState = Depends(get_state)) -> PngInfoResponse:
    """The infotext stored in an image (PNG ``parameters`` chunk, or EXIF), raw and parsed."""
    return await run_in_threadpool(_png_info, req.image, state.config.max_image_pixels)
