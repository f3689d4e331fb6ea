"""Our own job API under ``/api/v1/jobs``: submit, poll, cancel, and stream progress (what A1111 lacks).

``POST /api/v1/jobs`` takes the A1111 img2img body and answers 202 with the job id at once;
``GET /api/v1/jobs/{id}`` gives status, queue position, progress (spec §5.6 formula) and, when done,
the same body ``/sdapi/v1/img2img`` returns; ``DELETE`` cancels a queued or running job;
``GET /api/v1/jobs/{id}/events`` streams the job's state as server-sent events until it finishes;
``GET /api/v1/jobs`` lists the running, queued and retained jobs; ``GET /api/v1/jobs/{id}/preview``
is the running job's latest live preview (PNG); ``POST /api/v1/jobs/{id}/interrupt`` and ``.../skip``
act on that job only (A1111's ``/sdapi/v1/interrupt`` acts on whichever job runs).
Finished jobs are kept for ``result_ttl_s`` seconds and at most ``max_results`` of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from retouch.formats.images import encode_png
from retouch.server.a1111.routes import get_state, submit
from retouch.server.a1111.schemas import ErrorResponse, Img2ImgResponse
from retouch.server.api.schemas import JobRequest
from retouch.server.jobs import Job, JobStatus
from retouch.server.state import ServerState

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 404, 409, 413, 422, 429)}
router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=_ERRORS)

Status = Literal["queued", "running", "done", "failed", "cancelled"]


class JobCreated(BaseModel):
    id: str
    status: Status
    queue_position: int | None


class JobView(BaseModel):
    """One job. ``queue_position`` is 0 for the next job to run; ``error`` is A1111's error body."""

    id: str
    status: Status
    queue_position: int | None = None
    progress: float
    eta_relative: float
    job_no: int
    job_count: int
    sampling_step: int
    sampling_steps: int
    interrupted: bool
    cancel_requested: bool
    created: float
    started: float | None = None
    finished: float | None = None
    result: Img2ImgResponse | None = None
    error: ErrorResponse | None = None


def view(job: Job, queue_position: int | None, *, with_result: bool = True) -> JobView:
    error = None
    if job.error is not None:
        error = ErrorResponse(error=job.error.error, detail=job.error.detail, errors=job.error.detail)
    elif job.status is JobStatus.CANCELLED:
        error = ErrorResponse(error="JobCancelled", detail=f"job {job.id} was cancelled", errors="")
    return JobView(
        id=job.id, status=job.status.value, queue_position=queue_position, progress=job.progress(),
        eta_relative=job.eta_relative(), job_no=job.job_no, job_count=job.job_count,
        sampling_step=job.sampling_step, sampling_steps=job.sampling_steps, interrupted=job.interrupted,
        cancel_requested=job.cancel_requested, created=job.created, started=job.started, finished=job.finished,
        result=Img2ImgResponse(**job.result) if with_result and job.result is not None else None, error=error,
    )


def _find(state: ServerState, job_id: str) -> Job:
    job = state.queue.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id!r} (unknown, or its result has expired)")
    return job


@router.post("", status_code=202, response_model=JobCreated)
async def create_job(req: JobRequest, state: ServerState = Depends(get_state)) -> JobCreated:
    """Queue an img2img/inpaint job; answers at once with its id (429 with Retry-After when full).

    The body is A1111's img2img request plus Retouch's named soft-mask fields (``JobRequest``)."""
    job = await submit(state, req, retain=True)
    return JobCreated(id=job.id, status=job.status.value, queue_position=state.queue.position(job))


class JobList(BaseModel):
    """All jobs this server knows: the running one, the queued ones in order (queue_position 0, 1,
    ...), then the retained finished ones, newest first; without their result bodies."""

    jobs: list[JobView]
    running: int
    queued: int


@router.get("", response_model=JobList)
async def list_jobs(state: ServerState = Depends(get_state)) -> JobList:
    """The queue: running, queued and retained finished jobs (fetch a result with ``GET /{id}``)."""
    current, queued, finished = state.queue.listing()
    views = [view(current, None, with_result=False)] if current is not None else []
    views += [view(job, i, with_result=False) for i, job in enumerate(queued)]
    views += [view(job, None, with_result=False) for job in finished]
    return JobList(jobs=views, running=int(current is not None), queued=len(queued))


@router.get("/{job_id}", response_model=JobView)
async def get_job(job_id: str, state: ServerState = Depends(get_state)) -> JobView:
    job = _find(state, job_id)
    return view(job, state.queue.position(job))


@router.delete("/{job_id}", response_model=JobView)
async def cancel_job(job_id: str, state: ServerState = Depends(get_state)) -> JobView:
    """Cancel a queued job at once, or stop a running one within one sampler step (409 if finished)."""
    job = _find(state, job_id)
    if job.is_finished:
        raise HTTPException(409, f"job {job_id!r} already finished with status {job.status.value!r}")
    state.queue.cancel(job_id)
    return view(job, state.queue.position(job), with_result=False)


async def _events(state: ServerState, job: Job, poll_s: float) -> AsyncIterator[str]:
    seen = -1
    while True:
        if job.version != seen:
            seen = job.version
            data = view(job, state.queue.position(job), with_result=False).model_dump_json()
            kind = job.status.value if job.is_finished else "progress"
            yield f"event: {kind}\ndata: {data}\n\n"
            if job.is_finished:
                return
        await asyncio.sleep(poll_s)


@router.get("/{job_id}/events", response_class=StreamingResponse)
async def job_events(job_id: str, state: ServerState = Depends(get_state)) -> StreamingResponse:
    """Server-sent events: ``progress`` on every change, then one ``done``/``failed``/``cancelled``
    event (data: the job without its result; fetch it with ``GET /api/v1/jobs/{id}``)."""
    job = _find(state, job_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_events(state, job, 0.05), media_type="text/event-stream", headers=headers)



@router.get(
    "/{job_id}/preview", response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the latest preview"},
               204: {"description": "no preview yet"}},
)
async def job_preview(job_id: str, state: ServerState = Depends(get_state)) -> Response:
    """The running job's latest live preview as a PNG, or 204 when none is decoded yet. Each call
    asks for the next one, decoded once ``show_progress_every_n_steps`` more steps have run; a
    finished job has none (its images are in its result)."""
    job = _find(state, job_id)
    if job.status is JobStatus.RUNNING:
        job.preview_wanted = True
    preview = job.preview
    if preview is None:
        return Response(status_code=204, headers={"Cache-Control": "no-store"})
    data = await run_in_threadpool(encode_png, preview, None)
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


def _running(state: ServerState, job_id: str, action: str) -> Job:
    job = _find(state, job_id)
    if job.status is not JobStatus.RUNNING:
        hint = "; DELETE cancels a queued job" if job.status is JobStatus.QUEUED else ""
        raise HTTPException(409, f"cannot {action} job {job_id!r}: it is {job.status.value}, not running{hint}")
    return job


@router.post("/{job_id}/interrupt", response_model=JobView)
async def interrupt_job(job_id: str, state: ServerState = Depends(get_state)) -> JobView:
    """Stop this job within one sampler step; it finishes as done with its partial images
    (409 when it is not running)."""
    job = _running(state, job_id, "interrupt")
    if not state.queue.interrupt(job_id):
        raise HTTPException(409, f"cannot interrupt job {job_id!r}: it finished meanwhile")
    return view(job, None, with_result=False)


@router.post("/{job_id}/skip", response_model=JobView)
async def skip_job(job_id: str, state: ServerState = Depends(get_state)) -> JobView:
    """End this job's current batch (its later batches still run; 409 when it is not running)."""
    job = _running(state, job_id, "skip")
    if not state.queue.skip(job_id):
        raise HTTPException(409, f"cannot skip in job {job_id!r}: it finished meanwhile")
    return view(job, None, with_result=False)
