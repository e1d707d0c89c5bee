"""Attention patterns: the layers x heads grid of thumbnails and one head's full query x key map."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from neuroscope.server.deps import WorkerDep
from neuroscope.server.schemas.common import PromptRequest
from neuroscope.server.schemas.views import AttentionGridResponse, HeadRequest, HeadResponse

router = APIRouter(prefix="/api/attention", tags=["attention"])


@router.post("", response_model=AttentionGridResponse)
async def grid(req: PromptRequest, worker: WorkerDep) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = await worker.call(worker.attention_grid, req.prompt)
    return {**out.value, "timings": out.timings((time.perf_counter() - t0) * 1e3)}


@router.post("/head", response_model=HeadResponse)
async def head(req: HeadRequest, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(worker.head, req.prompt, req.layer, req.head)
    return out.value
