"""The Features view: SAE feature table, feature detail, prompt activations, labels, edits, contrast, export."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from neuroscope.server.schemas.common import Prompt, Strict

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
FeatureId = Annotated[int, Field(ge=0, le=10_000_000)]


class SAEInfo(BaseModel):
    name: str
    hook: str
    layer: int
    width: int
    d_in: int
    architecture: str
    k: int | None
    has_features: bool = Field(description="a feature store (density, contexts, top tokens) is attached")
    source: str


class SAEList(BaseModel):
    saes: list[SAEInfo]
    workspace: str


class FeatureRow(BaseModel):
    id: int
    density: float | None
    mean_activation: float | None
    max_activation: float | None
    top_tokens: list[str]
    label: str | None = None


class TablePage(BaseModel):
    rows: list[FeatureRow]
    total: int = Field(description="features matching the search")
    offset: int


class TokenWeight(BaseModel):
    token: str
    weight: float


class TokenValue(BaseModel):
    token: str
    value: float


class LogitEffects(BaseModel):
    promoted: list[TokenValue]
    suppressed: list[TokenValue]


class Context(BaseModel):
    tokens: list[str]
    center: int
    activation: float = Field(description="the recorded activation at the centre token")
    acts: list[float] = Field(description="activation on each token of the window (re-run behind a BOS)")


class Histogram(BaseModel):
    edges: list[float]
    counts: list[int]
    dead: int
    bin: int | None
    density: float


class FeatureStats(BaseModel):
    density: float
    mean_activation: float
    max_activation: float


class FeatureDetail(BaseModel):
    sae: str
    id: int
    label: str | None
    hook: str
    stats: FeatureStats | None
    cloud: list[TokenWeight] = Field(description="tokens it fires on, weighted by activation mass")
    logits: LogitEffects
    contexts: list[Context]
    histogram: Histogram | None


class PromptActsRequest(Strict):
    prompt: Prompt
    feature: FeatureId | None = None
    position: Annotated[int, Field(ge=0, le=100_000)] | None = None
    k: int = Field(default=20, ge=1, le=200)


class ActiveFeature(BaseModel):
    feature: int
    activation: float
    label: str | None
    top_tokens: list[str]


class PromptActs(BaseModel):
    tokens: list[str]
    acts: list[float] | None
    active: list[ActiveFeature] | None
    position: int | None


class LabelRequest(Strict):
    feature: FeatureId
    label: str = Field(max_length=200, description="empty removes the label")


class LabelResponse(BaseModel):
    sae: str
    feature: int
    label: str | None


class EditRequest(Strict):
    sae: Name
    features: list[FeatureId] = Field(min_length=1, max_length=16)
    method: Literal["ablate", "clamp"] = "ablate"
    value: float | None = Field(default=None, ge=-1e4, le=1e4, allow_inf_nan=False)
    rank: int = Field(default=8, ge=4, le=16)


class LiveEditInfo(BaseModel):
    name: str = Field(description="put this name in interventions.edits to apply the edit to a request")
    kind: Literal["lora", "hooked"]
    first_layer: int
    method: str | None = None
    features: list[int] | None = None
    value: float | None = None
    sae: str | None = None
    exact: bool | None = None
    inexact_reasons: list[str] | None = None


class EditList(BaseModel):
    edits: list[LiveEditInfo]


class ContrastRequest(Strict):
    positive: list[Prompt] = Field(min_length=4, max_length=200)
    negative: list[Prompt] = Field(min_length=4, max_length=200)
    top: int = Field(default=20, ge=1, le=100)


class ContrastRow(BaseModel):
    feature: int
    auroc: float
    auroc_train: float
    ci_low: float
    ci_high: float
    mean_diff: float
    mean_diff_train: float
    mean_positive: float
    mean_negative: float
    label: str | None = None


class ContrastResponse(BaseModel):
    hook: str
    n_positive: int
    n_negative: int
    n_train: dict[str, int]
    n_heldout: dict[str, int]
    features: list[ContrastRow]


class ExportRequest(Strict):
    name: Name
    edits: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, max_length=32
    )
    saes: list[Name] = Field(default_factory=list, max_length=16)


class ExportResponse(BaseModel):
    name: str
    path: str = Field(description="the bundle folder inside the workspace")
    download: str = Field(description="URL of a zip of the bundle")
    edits: list[str]
    saes: list[str]
