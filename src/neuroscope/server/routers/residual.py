"""Residual stream views: logit lens, norms and the PCA trajectory, direct logit attribution."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from neuroscope.server.compute import Spec
from neuroscope.server.deps import WorkerDep
from neuroscope.server.schemas.common import InterventionRequest
from neuroscope.server.schemas.views import (
    AttributionRequest,
    AttributionResponse,
    LensResponse,
    ResidualResponse,
)

router = APIRouter(prefix="/api", tags=["residual"])


@router.post("/lens", response_model=LensResponse)
async def lens(req: InterventionRequest, worker: WorkerDep) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = await worker.call(worker.lens, req.prompt, Spec.from_dict(req.interventions.model_dump()))
    return {**out.value, "timings": out.timings((time.perf_counter() - t0) * 1e3)}


@router.post("/residual", response_model=ResidualResponse)
async def residual(req: InterventionRequest, worker: WorkerDep) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = await worker.call(worker.residual, req.prompt, Spec.from_dict(req.interventions.model_dump()))
    return {**out.value, "timings": out.timings((time.perf_counter() - t0) * 1e3)}


@router.post("/attribution", response_model=AttributionResponse)
async def attribution(req: AttributionRequest, worker: WorkerDep) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = await worker.call(
        worker.attribution,
        req.prompt,
        Spec.from_dict(req.interventions.model_dump()),
        req.target,
        req.all_neurons,
    )
    return {**out.value, "timings": out.timings((time.perf_counter() - t0) * 1e3)}
