"""Our own job API under ``/api/v1/jobs``: submit, poll, cancel, and stream progress (what A1111 lacks).

``POST /api/v1/jobs`` takes the A1111 img2img body and answers 202 with the job id at once;
``GET /api/v1/jobs/{id}`` gives status, queue position, progress (spec §5.6 formula) and, when done,
the same body ``/sdapi/v1/img2img`` returns; ``DELETE`` cancels a queued or running job;
``GET /api/v1/jobs/{id}/events`` streams the job's state as server-sent events until it finishes.
Finished jobs are kept for ``result_ttl_s`` seconds and at most ``max_results`` of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

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

