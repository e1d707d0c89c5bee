"""Next-token runs (REST and WebSocket) and generation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from neuroscope.server.schemas.common import InterventionSpec, Prompt, Strict, Timings, TokenProb


class RunRequest(Strict):
    prompt: Prompt
    interventions: InterventionSpec = Field(default_factory=InterventionSpec)
    top_k: int = Field(default=10, ge=1, le=100)


class NextToken(BaseModel):
    token_id: int
    token: str
    logit: float
    prob: float
    base_logit: float
    base_prob: float
    delta_logit: float
    delta_prob: float


class RunResponse(BaseModel):
    tokens: list[str]
    token_ids: list[int]
    top: list[NextToken] = Field(
        description="top-k next tokens with the interventions, with deltas vs the plain run"
    )
    baseline: list[TokenProb] = Field(description="top-k next tokens of the plain run")
    kl: float = Field(description="KL(plain || intervened) of the next-token distribution, nats")
    timings: Timings


class WsRequest(Strict):
    id: int | str
    prompt: Prompt
    interventions: InterventionSpec = Field(default_factory=InterventionSpec)
    top_k: int = Field(default=10, ge=1, le=100)


class WsResult(RunResponse):
    type: Literal["result"] = "result"
    id: int | str


class WsError(BaseModel):
    type: Literal["error"] = "error"
    id: int | str | None
    status: int
    detail: str


class WsSuperseded(BaseModel):
    type: Literal["superseded"] = "superseded"
    id: int | str


class GenerateRequest(Strict):
    prompt: Prompt
    interventions: InterventionSpec = Field(default_factory=InterventionSpec)
    max_new_tokens: int = Field(default=20, ge=1, le=256)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class GenerateResponse(BaseModel):
    text: str = Field(description="continuation with the interventions active at every step")
    baseline: str | None = Field(description="the plain continuation (null when there are no interventions)")
    timings: Timings
