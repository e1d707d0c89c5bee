"""Provenance and circuit graphs: requests, and the graph document (``neuroscope-graph/1``) that every graph
view reads, the attribution graphs' included."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from neuroscope.server.schemas.common import NonNeg, Prompt, Strict


class GraphNode(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["feature", "error", "head", "mlp", "token", "embed", "logits"]
    band: float
    label: str
    layer: int | None = None
    pos: int | None = None
    attribution: float = 0.0
    value: float | None = None
    activation: float | None = None
    feature: int | None = None
    head: int | None = None
    source_pos: int | None = None
    top_tokens: list[str] = Field(default_factory=list)
    error_share: float | None = None
    completeness: float | None = None
    kept_share: float | None = None
    bias: float | None = None


class GraphEdge(BaseModel):
    source: str
    target: str
    weight: float
    path: str


class GraphBand(BaseModel):
    band: float
    label: str


class GraphDocument(BaseModel):
    """The graph JSON every graph view draws; the same document ``--json`` writes (graph.schema.json)."""

    schema_: str = Field(alias="schema", description="neuroscope-graph/1")
    kind: Literal["provenance", "circuit", "attribution"]  # neuroscope.graphs.schema.KINDS
    model: str
    title: str
    tokens: list[str] | None
    bands: list[GraphBand]
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    meta: dict[str, Any]

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ProvenanceRequest(Strict):
    prompt: Prompt
    layer: NonNeg
    feature: NonNeg
    position: int = Field(default=-1, ge=-100_000, le=100_000, description="token position; -1 = last")
    depth: int = Field(default=2, description="layers upstream (1..4; others get a 422 naming the range)")
    coverage: float = Field(default=0.8, gt=0, le=1)
    max_parents: int = Field(default=10, ge=1, le=50)
    max_expand: int = Field(default=8, ge=1, le=50)
    fold_identity: bool = True


class TopFeaturesRequest(Strict):
    prompt: Prompt
    layer: NonNeg
    position: int = Field(default=-1, ge=-100_000, le=100_000)
    k: int = Field(default=10, ge=1, le=50)


class TopFeature(BaseModel):
    feature: int
    activation: float
    top_tokens: list[str]


class TopFeaturesResponse(BaseModel):
    layer: int
    position: int
    tokens: list[str]
    features: list[TopFeature]


class SuiteInfo(BaseModel):
    path: str
    model: str
    hook: str
    layers: list[int]
    d_sae: dict[str, int]
    has_features: dict[str, bool]


class FeatureContext(BaseModel):
    tokens: list[str]
    center: int
    activation: float


class SuiteFeature(BaseModel):
    layer: int
    feature: int
    has_store: bool
    density: float | None = None
    mean_activation: float | None = None
    max_activation: float | None = None
    top_tokens: list[str] = Field(default_factory=list)
    logit_top_tokens: list[str] = Field(default_factory=list)
    logit_bottom_tokens: list[str] = Field(default_factory=list)
    contexts: list[FeatureContext] = Field(default_factory=list)


class CircuitRequest(Strict):
    task: str = Field(default="ioi", pattern="^[a-z_]{1,40}$", description="a task shipped with NeuroScope")
    edges: int = Field(default=200, ge=1, le=100_000)
    steps: int = Field(default=5, ge=1, le=64)
    sizes: list[int] | None = Field(default=None, max_length=20)
    random_draws: int = Field(default=3, ge=0, le=20)
    max_pairs: int | None = Field(
        default=None, ge=1, le=1000, description="use only the first pairs (faster)"
    )
