"""Provenance and circuit graphs: thin wrappers over ``neuroscope.graphs.service`` (run on the model worker)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from neuroscope.graphs.service import GraphService
from neuroscope.server.deps import WorkerDep
from neuroscope.server.schemas.graphs import (
    CircuitRequest,
    GraphDocument,
    ProvenanceRequest,
    SuiteFeature,
    SuiteInfo,
    TopFeaturesRequest,
    TopFeaturesResponse,
)

router = APIRouter(prefix="/api/graphs", tags=["graphs"])


def get_graphs(request: Request) -> GraphService:
    return request.app.state.graphs


GraphsDep = Annotated[GraphService, Depends(get_graphs)]


@router.get("/suite", response_model=SuiteInfo)
def suite(graphs: GraphsDep) -> dict[str, Any]:
    return graphs.suite_info()


@router.post("/provenance", response_model=GraphDocument)
async def provenance(req: ProvenanceRequest, graphs: GraphsDep, worker: WorkerDep) -> dict[str, Any]:
    cfg = req.model_dump(exclude={"prompt", "layer", "feature", "position"})
    out = await worker.call(graphs.provenance, req.prompt, req.layer, req.feature, req.position, **cfg)
    return out.value


@router.post("/top-features", response_model=TopFeaturesResponse)
async def top_features(req: TopFeaturesRequest, graphs: GraphsDep, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(graphs.top_features, req.prompt, req.layer, req.position, req.k)
    return out.value


@router.get("/feature/{layer}/{feature}", response_model=SuiteFeature)
def feature(
    layer: Annotated[int, Path(ge=0, le=10_000)],
    feature: Annotated[int, Path(ge=0, le=10_000_000)],
    graphs: GraphsDep,
) -> dict[str, Any]:
    return graphs.feature(layer, feature)


@router.post("/circuit", response_model=GraphDocument)
async def circuit(req: CircuitRequest, graphs: GraphsDep, worker: WorkerDep) -> dict[str, Any]:
    sizes = tuple(req.sizes) if req.sizes else None
    out = await worker.call(
        graphs.circuit, req.task, req.edges, req.steps, sizes, req.random_draws, req.max_pairs
    )
    return out.value
