"""Model description and steering vectors."""

from __future__ import annotations

from pydantic import BaseModel, Field

from neuroscope.server.schemas.common import NonNeg, Strict


class Limits(BaseModel):
    max_prompt_chars: int
    max_prompt_tokens: int
    max_new_tokens: int
    max_body_bytes: int


class ModelInfo(BaseModel):
    name: str
    model_type: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    limits: Limits
    web: bool = Field(
        default=False, description="an ONNX split export is served at /web/ (neuroscope ui --onnx)"
    )


class SteeringVector(BaseModel):
    name: str
    layer: int
    norm: float
    source: str


class SteeringVectorList(BaseModel):
    vectors: list[SteeringVector]


class CreateVectorRequest(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    positive: list[str] = Field(min_length=1, max_length=32)
    negative: list[str] = Field(min_length=1, max_length=32)
    layer: NonNeg
