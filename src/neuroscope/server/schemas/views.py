"""Attention, logit lens, residual stream and attribution views."""

from __future__ import annotations

from pydantic import BaseModel, Field

from neuroscope.server.schemas.common import InterventionSpec, NonNeg, Prompt, Strict, Timings


class HeadBadge(BaseModel):
    layer: int
    head: int
    kind: str = Field(description="previous-token | induction | duplicate-token | first-token | self")
    score: float
    source: str = Field(
        description="classifier: neuroscope.analysis.attention on random repeated tokens; prompt: the same "
        "scores and thresholds on this prompt's patterns (used when the classifier labels no head)"
    )


class AttentionGridResponse(BaseModel):
    tokens: list[str]
    n_layers: int
    n_heads: int
    size: int = Field(description="side of each thumbnail (the pattern is average-pooled when longer)")
    thumbs: list[list[list[float]]] = Field(description="[layer][head] -> size*size row-major pattern values")
    badges: list[HeadBadge]
    timings: Timings


class HeadRequest(Strict):
    prompt: Prompt
    layer: NonNeg
    head: NonNeg


class HeadResponse(BaseModel):
    tokens: list[str]
    layer: int
    head: int
    pattern: list[list[float]] = Field(description="[query][key] attention probabilities")


class LensResponse(BaseModel):
    tokens: list[str]
    layers: list[str] = Field(description="row labels: embed, then each layer's resid_post")
    top_tokens: list[list[str]] = Field(description="[row][position] most likely next token")
    top_ids: list[list[int]]
    probs: list[list[float]]
    timings: Timings


class PcaTrajectory(BaseModel):
    labels: list[str]
    points: list[list[float]] = Field(description="[row] -> [pc1, pc2, pc3] of the last token's residual")
    baseline_points: list[list[float]] | None
    explained: list[float]


class ResidualResponse(BaseModel):
    tokens: list[str]
    labels: list[str]
    norms: list[list[float]] = Field(description="[row][position] L2 norm of the residual stream")
    baseline_norms: list[list[float]] | None
    pca: PcaTrajectory
    timings: Timings


class AttributionRequest(Strict):
    prompt: Prompt
    interventions: InterventionSpec = Field(default_factory=InterventionSpec)
    target: str | None = Field(
        default=None, max_length=200, description="target token text (default: the top prediction)"
    )
    all_neurons: bool = Field(
        default=False, description="also return every neuron's direct logit attribution (neuron_map)"
    )


class Component(BaseModel):
    label: str
    value: float


class NeuronScore(BaseModel):
    layer: int
    neuron: int
    value: float = Field(
        description="direct effect on the target logit (activation x output row, through the frozen norms, "
        ". unembedding)"
    )
    activation: float


class AttributionResponse(BaseModel):
    """neuroscope.analysis.residual.direct_logit_attribution and attribution.gradient_x_input at the last
    position: components sum to ``actual``; each layer's heads plus ``attn_bias`` sum to its ``attn`` component
    and its neurons plus ``mlp_bias`` to its ``mlp`` component (post-sublayer norms frozen on this run)."""

    target: str
    target_id: int
    actual: float = Field(description="the model's (pre-softcap) logit of the target at the last position")
    components: list[Component] = Field(
        description="direct logit attribution of embed (pos_embed), each attn and MLP output "
        "(attn{l}, mlp{l}), and the final norm's and unembedding's biases where the model has them"
    )
    heads: list[list[float]] = Field(description="[layer][head] direct logit attribution of each head")
    attn_bias: list[float] = Field(description="[layer] the attention output bias's term")
    mlp_bias: list[float] = Field(description="[layer] the MLP output bias's term")
    neurons: list[NeuronScore] = Field(
        description="MLP neurons with the largest direct logit attribution at the last position "
        "(neurons of a whole-ablated MLP are left out)"
    )
    neuron_map: list[list[float]] | None = Field(
        default=None, description="[layer][neuron] every neuron's term, when all_neurons was asked for"
    )
    token_scores: list[float] = Field(description="gradient x input of each prompt token on the target logit")
    tokens: list[str]
    timings: Timings
