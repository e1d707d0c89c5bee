"""Next-token predictions under interventions, and generation."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from neuroscope.errors import InvalidConfigError
from neuroscope.server.audit import client_of
from neuroscope.server.compute import Spec
from neuroscope.server.deps import SettingsDep, WorkerDep
from neuroscope.server.schemas.run import GenerateRequest, GenerateResponse, RunRequest, RunResponse

router = APIRouter(prefix="/api", tags=["run"])


@router.post("/run", response_model=RunResponse)
async def run(req: RunRequest, worker: WorkerDep, request: Request) -> dict[str, Any]:
    t0 = time.perf_counter()
    spec = Spec.from_dict(req.interventions.model_dump())
    _audit(request, spec, req.prompt, "run")
    out = await worker.call(worker.next_token, req.prompt, spec, req.top_k, priority=0)
    return {**out.value, "timings": out.timings((time.perf_counter() - t0) * 1e3)}


@router.post("/generate", response_model=GenerateResponse)
async def generate(
    req: GenerateRequest, worker: WorkerDep, settings: SettingsDep, request: Request
) -> dict[str, Any]:
    if req.max_new_tokens > settings.max_new_tokens:
        raise InvalidConfigError(
            f"max_new_tokens is {req.max_new_tokens}; this server allows at most {settings.max_new_tokens}."
        )
    t0 = time.perf_counter()
    spec = Spec.from_dict(req.interventions.model_dump())
    _audit(request, spec, req.prompt, "generate")
    out = await worker.call(worker.generate, req.prompt, spec, req.max_new_tokens, req.temperature, req.seed)
    return {**out.value, "timings": out.timings((time.perf_counter() - t0) * 1e3)}


def _audit(request: Request, spec: Spec, prompt: str, kind: str) -> None:
    """A live run steered along the refusal direction leaves a line in the audit log (before it runs)."""
    audit = getattr(request.app.state, "refusal", None)
    if audit is not None:
        audit.record(spec, prompt, client_of(request), kind, request.app.state.worker)
