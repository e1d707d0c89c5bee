"""Shared request pieces: the prompt and the intervention spec the UI sends with every view."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PROMPT_MAX_CHARS = (
    20000  # a schema-level ceiling; the server's own (smaller) limit is Settings.max_prompt_chars
)

Prompt = Annotated[str, Field(min_length=1, max_length=PROMPT_MAX_CHARS, description="the prompt text")]
NonNeg = Annotated[int, Field(ge=0, le=1_000_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SteerSpec(Strict):
    vector: str = Field(min_length=1, max_length=200, description="name of a saved steering vector")
    layer: NonNeg | None = Field(
        default=None, description="residual stream layer (default: the vector's own layer)"
    )
    alpha: float = Field(default=1.0, ge=-1000, le=1000, allow_inf_nan=False)


class InterventionSpec(Strict):
    """Zero-ablations and steering, applied together (heads at attn.hook_z, neurons at mlp.hook_post)."""

    heads: list[tuple[NonNeg, NonNeg]] = Field(
        default_factory=list, max_length=2000, description="[layer, head] pairs"
    )
    neurons: list[tuple[NonNeg, NonNeg]] = Field(
        default_factory=list, max_length=2000, description="[layer, neuron] pairs"
    )
    mlps: list[NonNeg] = Field(
        default_factory=list, max_length=1000, description="layers whose whole MLP output is zeroed"
    )
    steer: SteerSpec | None = None
    edits: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        max_length=32,
        description="prepared feature edits (POST /api/edits), active for this request only",
    )

    def is_empty(self) -> bool:
        return not (self.heads or self.neurons or self.mlps or self.steer or self.edits)


class PromptRequest(Strict):
    prompt: Prompt


class InterventionRequest(Strict):
    prompt: Prompt
    interventions: InterventionSpec = Field(default_factory=InterventionSpec)


class TokenProb(BaseModel):
    token_id: int
    token: str
    logit: float
    prob: float


class Timings(BaseModel):
    queue_ms: float = Field(description="waiting for the model worker")
    compute_ms: float = Field(description="time on the model worker")
    total_ms: float = Field(default=0.0, description="request received to reply ready")
    cached_baseline: bool = Field(description="the plain run of this prompt came from the cache")
    first_layer: int | None = Field(
        description="first intervened layer; layers below it were reused from the cache"
    )
    recomputed_layers: int = Field(description="decoder layers run for this request")
    batch_size: int = Field(default=1, description="requests (from any clients) served by the same forward")


class ErrorResponse(BaseModel):
    detail: str
