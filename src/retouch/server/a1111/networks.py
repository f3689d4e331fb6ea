"""A1111's extra-network listing routes: ``/sdapi/v1/loras``, ``/embeddings`` and their refreshes.

Shapes as A1111 answers them (spec a1111-prompts.md §4.1, §5.1): ``GET /loras`` is a list of
``{name, alias, path, metadata}``; ``GET /embeddings`` is ``{"loaded": {...}, "skipped": {...}}``. A
server started without ``--lora-dir`` / ``--embeddings-dir`` has none, and says so with empty lists
(a prompt naming one is then refused with a message saying the folder is not configured).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from retouch.server.a1111.routes import get_state
from retouch.server.state import ServerState

__all__ = ["router"]

router = APIRouter(prefix="/sdapi/v1", tags=["A1111"])


def _networks(state: ServerState) -> Any:
    return getattr(state.engine, "networks", None)


@router.get("/loras")
async def loras(state: ServerState = Depends(get_state)) -> list[dict[str, Any]]:
    """The LoRA/LyCORIS files of ``--lora-dir`` (A1111 ``/sdapi/v1/loras``)."""
    nets = _networks(state)
    if nets is None or nets.loras is None:
        return []
    return [entry.as_api() for entry in nets.loras.list()]


@router.post("/refresh-loras")
async def refresh_loras(state: ServerState = Depends(get_state)) -> None:
    """Scan ``--lora-dir`` again (A1111 ``/sdapi/v1/refresh-loras``)."""
    nets = _networks(state)
    if nets is not None and nets.loras is not None:
        await run_in_threadpool(nets.loras.refresh)


@router.get("/embeddings")
async def embeddings(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """The textual-inversion embeddings of ``--embeddings-dir`` (A1111 ``/sdapi/v1/embeddings``)."""
    nets = _networks(state)
    if nets is None or nets.embeddings is None:
        return {"loaded": {}, "skipped": {}}
    await run_in_threadpool(nets.embeddings.refresh)
    listing: dict[str, Any] = nets.embeddings.api_listing()
    return listing


@router.post("/refresh-embeddings")
async def refresh_embeddings(state: ServerState = Depends(get_state)) -> None:
    """Read ``--embeddings-dir`` again (A1111 ``/sdapi/v1/refresh-embeddings``)."""
    nets = _networks(state)
    if nets is not None and nets.embeddings is not None:
        await run_in_threadpool(nets.embeddings.refresh, True)
