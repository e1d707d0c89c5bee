"""What model is loaded, its limits, and the worker's health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from neuroscope.server.deps import SettingsDep, WorkerDep
from neuroscope.server.schemas.model import ModelInfo

router = APIRouter(prefix="/api", tags=["model"])


@router.get("/model", response_model=ModelInfo)
async def model_info(worker: WorkerDep, settings: SettingsDep) -> dict[str, Any]:
    c = worker.model.cfg
    return {
        "name": c.name,
        "model_type": c.model_type,
        "n_layers": c.n_layers,
        "n_heads": c.n_heads,
        "n_kv_heads": c.n_kv_heads,
        "d_model": c.d_model,
        "d_mlp": c.d_mlp,
        "d_vocab": c.d_vocab,
        "n_ctx": c.n_ctx,
        "limits": {
            "max_prompt_chars": worker.max_prompt_chars,
            "max_prompt_tokens": worker.max_prompt_tokens,
            "max_new_tokens": settings.max_new_tokens,
            "max_body_bytes": settings.max_body_bytes,
        },
        "web": settings.onnx_dir is not None,
    }


@router.get("/health")
async def health(worker: WorkerDep) -> dict[str, Any]:
    return {"status": "ok", **worker.info()}
