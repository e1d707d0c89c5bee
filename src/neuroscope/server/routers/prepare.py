"""The prepared SAE suite's progress (``neuroscope.server.prepare``), polled by the Features, Provenance and
Circuits views while it runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from neuroscope.server.schemas.prepare import PrepareStatus

router = APIRouter(tags=["prepare"])


@router.get("/api/prepare", response_model=PrepareStatus)
def prepare_status(request: Request) -> dict[str, Any]:
    preparer = request.app.state.preparer
    return preparer.status() if preparer is not None else {"state": "off"}
