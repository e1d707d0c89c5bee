"""The prepared SAE suite's status (``GET /api/prepare``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PrepareStatus(BaseModel):
    state: Literal["off", "checking", "waiting", "running", "ready", "failed"] = Field(
        description="off: not preparing (--no-prepare, or SAEs were given); ready: attached"
    )
    stage: str | None = Field(default=None, description="what it does now, e.g. 'record train', 'train L14'")
    fraction: float | None = Field(default=None, description="the whole preparation's share done, 0..1")
    message: str | None = Field(default=None, description="why it failed, or where the suite came from")
    notices: list[str] = Field(default_factory=list, description="e.g. why a cached suite was rebuilt")
    elapsed_s: float | None = None
    sae: str | None = Field(default=None, description="the Features view's name for the prepared SAE")
    layers: list[int] = Field(default_factory=list)
    feature_layer: int | None = None
    path: str | None = Field(default=None, description="the cached suite's folder")
