"""The embedding explorer's routes: thin wrappers over ``neuroscope.analysis.embeddings``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from neuroscope.analysis import embeddings
from neuroscope.server.deps import WorkerDep
from neuroscope.server.schemas.embeddings import (
    AnalogyRequest,
    AnalogyResponse,
    EmbeddingMapRequest,
    EmbeddingMapResponse,
    NeighboursRequest,
    NeighboursResponse,
)

router = APIRouter(prefix="/api/embeddings", tags=["embeddings"])


def _neighbours(rows: list[tuple[str, int, float]]) -> list[dict[str, Any]]:
    return [{"token": t, "token_id": i, "cosine": c} for t, i, c in rows]


@router.post("/map", response_model=EmbeddingMapResponse)
async def embedding_map(req: EmbeddingMapRequest, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(embeddings.embedding_map, worker.model, req.words, 3, req.matrix, req.threshold)
    return out.value.to_dict()


@router.post("/neighbours", response_model=NeighboursResponse)
async def neighbours(req: NeighboursRequest, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(embeddings.word_neighbours, worker.model, req.word, req.k, req.matrix)
    r = out.value
    return {"word": r.word.to_dict(), "neighbours": _neighbours(r.neighbours)}


@router.post("/analogy", response_model=AnalogyResponse)
async def analogy(req: AnalogyRequest, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(
        embeddings.analogy, worker.model, req.a, req.b, req.c, req.expected, req.k, req.matrix
    )
    return {**out.value.to_dict(), "ranked": _neighbours(out.value.ranked)}
