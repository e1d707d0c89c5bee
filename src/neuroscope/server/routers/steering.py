"""Saved steering vectors: list them, or make one from contrasting prompts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from neuroscope.server.deps import WorkerDep
from neuroscope.server.schemas.model import CreateVectorRequest, SteeringVector, SteeringVectorList

router = APIRouter(prefix="/api/steering", tags=["steering"])


def _describe(e: Any) -> dict[str, Any]:
    return {"name": e.name, "layer": e.layer, "norm": float(e.vector.norm()), "source": e.source}


@router.get("/vectors", response_model=SteeringVectorList)
async def list_vectors(worker: WorkerDep) -> dict[str, Any]:
    return {"vectors": [_describe(e) for e in worker.vectors.values()]}


@router.post("/vectors", response_model=SteeringVector)
async def create_vector(req: CreateVectorRequest, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(worker.contrast_vector, req.name, req.positive, req.negative, req.layer)
    return _describe(out.value)
