"""Requests and replies of the attribution-graph workbench (``/api/attribution-graph/*``,
``/ws/attribution-graph``). Bounds here keep one request from claiming the server; what a value means (a
position past the prompt, an unknown node id, a supernode edit that cannot apply) is checked by the library,
which names the error (422)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from neuroscope.server.schemas.common import NonNeg, Prompt, Strict
from neuroscope.server.schemas.graphs import FeatureContext

Threshold = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
GraphId = Annotated[str, Field(pattern=r"^g[0-9]{1,12}$", description="from /build")]
NodeId = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Position = Annotated[
    int, Field(ge=-100_000, le=100_000, description="token position; negative = from the end")
]


class TranscodersInfo(BaseModel):
    available: bool
    path: str | None
    model: str | None
    layers: list[int]
    d_tc: dict[str, int]
    detail: str | None = Field(description="why there are none (null when available)")


class BuildRequest(Strict):
    prompt: Prompt
    node_threshold: Threshold = 0.8
    edge_threshold: Threshold = 0.98
    max_feature_nodes: int = Field(default=1000, ge=1, le=7500)


class PruneRequest(Strict):
    graph_id: GraphId
    node_threshold: Threshold = 0.8
    edge_threshold: Threshold = 0.98


class GraphReply(BaseModel):
    graph_id: str
    graph: dict[str, Any] = Field(description="the pruned attribution graph document")


class SupernodeGroup(Strict):
    id: NodeId
    name: str = Field(min_length=1, max_length=120)
    members: list[NodeId] = Field(max_length=10_000)


class SupernodeSpecModel(Strict):
    groups: list[SupernodeGroup] = Field(max_length=1000)


class SupernodesRequest(Strict):
    graph_id: GraphId
    node_threshold: Threshold = Field(default=0.8, description="the view's pruning: group what it shows")
    edge_threshold: Threshold = 0.98
    threshold: Threshold = 0.6
    role_weight: float = Field(default=0.5, ge=0, le=1)


class SupernodeEdit(Strict):
    op: Literal["merge", "split", "rename", "move"]
    ids: list[NodeId] | None = Field(default=None, max_length=1000, description="merge: supernode ids")
    id: NodeId | None = Field(default=None, description="split / rename: the supernode")
    members: list[NodeId] | None = Field(
        default=None, max_length=10_000, description="split: nodes to move out"
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    node: NodeId | None = Field(default=None, description="move: the node")
    to: NodeId | None = Field(default=None, description="move: the supernode (null: out of every supernode)")


class SupernodeEditRequest(Strict):
    graph_id: GraphId
    spec: SupernodeSpecModel
    edit: SupernodeEdit
    node_threshold: Threshold = Field(default=0.8, description="the view's pruning (for the collapsed edges)")
    edge_threshold: Threshold = 0.98


class CollapsedEdge(BaseModel):
    source: str
    target: str
    weight: float


class SupernodesReply(BaseModel):
    graph_id: str
    spec: SupernodeSpecModel
    edges: list[CollapsedEdge] = Field(description="the graph's edges with each supernode collapsed")


class QKRequest(Strict):
    prompt: Prompt
    layer: NonNeg
    head: NonNeg
    query_pos: Position = -1
    key_pos: Position = 0
    top: int = Field(default=20, ge=1, le=200)


class QKNode(BaseModel):
    id: str
    kind: str
    total: float = Field(description="this node's share of the score (summed over the other side)")
    pos: int | None = None
    layer: int | None = None
    feature: int | None = None
    activation: float | None = None


class QKPair(BaseModel):
    query: str
    key: str
    value: float


class QKReply(BaseModel):
    layer: int
    head: int
    kv_head: int
    query_pos: int
    key_pos: int
    tokens: list[str]
    score: float = Field(description="the head's pre-softmax score (before any soft-cap)")
    pair_sum: float = Field(description="sum of every (query node, key node) pair: equals score")
    scale: float
    softcap: float | None
    pattern: float
    n_query_nodes: int
    n_key_nodes: int
    query_nodes: list[QKNode]
    key_nodes: list[QKNode]
    top_pairs: list[QKPair]


class NodeInterventionModel(Strict):
    node: NodeId = Field(description="f_L_P_F (feature), e_L_P (error), or a supernode id of `spec`")
    mode: Literal["ablate", "scale", "add", "set"] = "ablate"
    value: float = Field(default=0.0, ge=-1e6, le=1e6, allow_inf_nan=False)


class InterveneRequest(Strict):
    graph_id: GraphId
    interventions: list[NodeInterventionModel] = Field(min_length=1, max_length=2000)
    spec: SupernodeSpecModel | None = Field(default=None, description="needed when naming supernodes")
    top_k: int = Field(default=10, ge=1, le=100)
    freeze: bool = Field(
        default=False, description="hold attention patterns and norm scales (the graph's linearisation)"
    )


class TopToken(BaseModel):
    token: str
    token_id: int
    prob: float
    logit: float


class LogitChange(BaseModel):
    id: str
    token_id: int
    before: float
    after: float


class FeatureChange(BaseModel):
    id: str
    layer: int
    pos: int
    feature: int
    before: float
    after: float


class InterveneReply(BaseModel):
    graph_id: str
    tokens: list[str]
    top_before: list[TopToken]
    top_after: list[TopToken]
    logit_nodes: list[LogitChange]
    downstream: list[FeatureChange] = Field(description="graph feature nodes whose activation changed")
    applied: list[dict[str, Any]]


class TokenEffect(BaseModel):
    token: str
    value: float


class TranscoderFeatureDetail(BaseModel):
    layer: int
    feature: int
    d_tc: int
    promoted: list[TokenEffect] = Field(description="tokens W_dec[f] @ W_U raises most (no final norm)")
    suppressed: list[TokenEffect]
    tokens: list[str] | None = Field(description="the graph's tokens (with graph_id)")
    activations: list[float] | None = Field(description="the feature's activation at each of them")
    has_store: bool = Field(description="the transcoder folder has a feature store for this layer")
    density: float | None = None
    mean_activation: float | None = None
    max_activation: float | None = None
    top_tokens: list[str] = Field(default_factory=list)
    contexts: list[FeatureContext] = Field(default_factory=list, description="top activating contexts (≤ 8)")


class WsIntervene(InterveneRequest):
    """``/ws/attribution-graph``: an intervention request (a newer one replaces a queued older one)."""

    type: Literal["intervene"]
    id: int | str | None = None


class WsInterveneResult(InterveneReply):
    type: Literal["result"] = "result"
    id: int | str | None = None


ATTRIBUTION_WS_MODELS = (WsIntervene, WsInterveneResult)
