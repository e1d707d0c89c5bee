"""Interventions from an attribution graph: ablate or steer a node (or a supernode's members) at its position
in the replacement model, and see the top logits and the graph's downstream feature nodes change.

Node ids are the attribution graph's (``f_L_P_F``, ``e_L_P``). A feature intervention sets the feature's
activation at its layer and position (``ablate``: 0; ``scale``: ``value ×`` its activation; ``add``:
activation ``+ value``; ``set``: ``value``); an error intervention scales the error term there (``ablate``:
0). Everything downstream is recomputed by the replacement model, with the error terms held at the clean run's
values as circuit-tracer does (:class:`neuroscope.transcoders.replacement.ReplacementModel`); ``freeze=True``
also holds attention patterns and norm scales at the clean run's values, the linearisation the graph's edges
are exact in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import (
    IndexOutOfRangeError,
    InvalidConfigError,
    PromptTooLongError,
    UnknownGraphNodeError,
)
from neuroscope.transcoders.replacement import RecordedRun, ReplacementModel

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.transcoders.model import TranscoderSet
    from neuroscope.transcoders.supernodes import SupernodeSpec

MODES = ("ablate", "scale", "add", "set")
MAX_INTERVENTIONS = 2000


@dataclass(frozen=True)
class NodeIntervention:
    node: str  # a graph node id, or a supernode id (expanded with :func:`expand`)
    mode: str = "ablate"
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidConfigError(
                f"Unknown intervention mode {self.mode!r}; choose one of {', '.join(MODES)}."
            )
        if not torch.isfinite(torch.tensor(float(self.value))):
            raise InvalidConfigError(f"Intervention value must be finite; got {self.value}.")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "ablate":
            return torch.zeros_like(x)
        if self.mode == "scale":
            return x * self.value
        if self.mode == "add":
            return x + self.value
        return torch.full_like(x, self.value)


def expand(interventions: list[NodeIntervention], spec: SupernodeSpec | None) -> list[NodeIntervention]:
    """Supernode ids become one intervention per member (same mode and value)."""
    groups = {g.id: g for g in spec.groups} if spec is not None else {}
    out: list[NodeIntervention] = []
    for iv in interventions:
        members = groups[iv.node].members if iv.node in groups else (iv.node,)
        out += [NodeIntervention(m, iv.mode, iv.value) for m in members]
    if len(out) > MAX_INTERVENTIONS:
        raise InvalidConfigError(f"At most {MAX_INTERVENTIONS} node interventions at once; got {len(out)}.")
    return out


@dataclass(frozen=True)
class Target:
    kind: str  # feature | error
    layer: int
    pos: int
    feature: int | None
    iv: NodeIntervention


def parse_node(node: str, transcoders: TranscoderSet, n_tokens: int, iv: NodeIntervention) -> Target:
    """``f_L_P_F`` or ``e_L_P`` (the attribution graph's ids), checked against the transcoders and the
    prompt's length."""
    parts = node.split("_")
    try:
        nums = [int(x) for x in parts[1:]]
    except ValueError:
        raise UnknownGraphNodeError(node, "not a feature or error node id") from None
    if parts[0] == "f" and len(nums) == 3:
        layer, pos, feature = nums
        kind = "feature"
    elif parts[0] == "e" and len(nums) == 2:
        (layer, pos), feature, kind = nums, None, "error"
    else:
        raise UnknownGraphNodeError(node, "only feature and error nodes take interventions")
    if layer not in transcoders.transcoders:
        raise UnknownGraphNodeError(node, f"layer {layer} has no transcoder")
    if not 0 <= pos < n_tokens:
        raise IndexOutOfRangeError("position", pos, n_tokens)
    if feature is not None and not 0 <= feature < transcoders[layer].cfg.d_tc:
        raise IndexOutOfRangeError("feature", feature, transcoders[layer].cfg.d_tc)
    if feature is None and iv.mode not in ("ablate", "scale"):
        raise InvalidConfigError(f"An error node can be ablated or scaled, not {iv.mode!r} ({node}).")
    return Target(kind, layer, pos, feature, iv)


@dataclass
class InterventionResult:
    tokens: list[str]
    top_before: list[dict[str, Any]]
    top_after: list[dict[str, Any]]
    logit_nodes: list[dict[str, Any]]  # the graph's logit nodes: before/after logit
    downstream: list[dict[str, Any]]  # the graph's feature nodes whose activation changed
    applied: list[dict[str, Any]] = field(default_factory=list)
    logits_before: torch.Tensor | None = field(default=None, repr=False)  # [d_vocab], last position
    logits_after: torch.Tensor | None = field(default=None, repr=False)

    def figure(self):
        """Probabilities of the top tokens before and after (the union of both top lists), side by side."""
        import plotly.graph_objects as go

        before = {t["token_id"]: t for t in self.top_before}
        after = {t["token_id"]: t for t in self.top_after}
        ids = list(dict.fromkeys([*before, *after]))
        label = {i: repr((before.get(i) or after[i])["token"]) for i in ids}
        fig = go.Figure()
        for name, probs, side in (
            ("before", before, self.logits_before),
            ("after", after, self.logits_after),
        ):
            p = torch.softmax(side.float(), -1) if side is not None else None
            ys = [float(p[i]) if p is not None else probs.get(i, {}).get("prob", 0.0) for i in ids]
            fig.add_trace(go.Bar(name=name, x=[f"{i}:{label[i]}" for i in ids], y=ys))
        applied = ", ".join(f"{a['mode']} {a['node']}" for a in self.applied[:4])
        fig.update_layout(barmode="group", title=f"next token after {applied}", yaxis_title="probability")
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "top_before": self.top_before,
            "top_after": self.top_after,
            "logit_nodes": self.logit_nodes,
            "downstream": self.downstream,
            "applied": self.applied,
        }


def _top(model: HookedModel, logits: torch.Tensor, k: int) -> list[dict[str, Any]]:
    probs = torch.softmax(logits.float(), -1)
    vals, idx = probs.topk(k)
    return [
        {"token": model.tokenizer.decode([i]), "token_id": i, "prob": float(v), "logit": float(logits[i])}
        for v, i in zip(vals.tolist(), idx.tolist(), strict=True)
    ]


@torch.no_grad()
def intervene(
    model: HookedModel,
    transcoders: TranscoderSet,
    prompt: str | torch.Tensor,
    interventions: list[NodeIntervention],
    graph: dict[str, Any] | None = None,
    spec: SupernodeSpec | None = None,
    top_k: int = 10,
    freeze: bool = False,
    min_change: float = 1e-6,
    memo: dict[Any, Any] | None = None,
) -> InterventionResult:
    """Run the replacement model on ``prompt`` clean and with the interventions; report the last position's
    top logits, the graph's logit nodes and its feature nodes (``graph``: the graph's ``to_dict()``).
    ``memo``: a dict the caller keeps for this prompt and these transcoders, where the recorded run and the
    clean forwards are kept between calls (a live view then pays one forward per intervention)."""
    if not 1 <= top_k <= 100:
        raise InvalidConfigError(f"top_k must be in 1..100; got {top_k}.")
    from neuroscope.transcoders.attribution import prepare_tokens

    # text as attribution graphs tokenize it (a special token first), so positions match a graph's
    ids = prepare_tokens(model, prompt).to(model.device)
    if ids.numel() > model.cfg.n_ctx:
        raise PromptTooLongError(int(ids.numel()), model.cfg.n_ctx)
    ivs = expand(interventions, spec)
    known = {n["id"] for n in graph["nodes"]} if graph is not None else None
    targets = []
    for iv in ivs:
        if known is not None and iv.node not in known:
            raise UnknownGraphNodeError(iv.node)
        targets.append(parse_node(iv.node, transcoders, int(ids.shape[0]), iv))
    memo = {} if memo is None else memo
    if "run" not in memo or not torch.equal(memo["run"].tokens.cpu(), ids.cpu()):
        memo.clear()
        memo["rm"] = ReplacementModel(model, transcoders)
        memo["run"] = memo["rm"].record(ids)
    rm, run = memo["rm"], memo["run"]
    if ("clean", freeze) not in memo:
        memo[("clean", freeze)] = replacement_run(rm, run, [], freeze)
    clean_logits, clean_acts = memo[("clean", freeze)]
    logits, acts = replacement_run(rm, run, targets, freeze)
    if not bool(torch.isfinite(logits).all()) or not all(
        bool(torch.isfinite(a).all()) for a in acts.values()
    ):
        raise InvalidConfigError(
            "The intervention drove the replacement model to inf/NaN: use a smaller value or scale."
        )
    feats = [n for n in graph["nodes"] if n.get("type") == "feature"] if graph is not None else []
    downstream = []
    hit = {(t.layer, t.pos, t.feature) for t in targets}
    for n in feats:
        layer, pos, f = int(n["layer"]), int(n["pos"]), int(n["feature"])
        if (layer, pos, f) in hit:  # the intervened nodes themselves are in ``applied``
            continue
        before, after = float(clean_acts[layer][pos, f]), float(acts[layer][pos, f])
        if abs(after - before) > min_change:
            downstream.append(
                {"id": n["id"], "layer": layer, "pos": pos, "feature": f, "before": before, "after": after}
            )
    downstream.sort(key=lambda r: -abs(r["after"] - r["before"]))
    logit_nodes = []
    for n in graph["nodes"] if graph is not None else []:
        tid = n.get("token_id")
        if n.get("type") == "logits" and isinstance(tid, int) and 0 <= tid < clean_logits.shape[-1]:
            logit_nodes.append(
                {
                    "id": n["id"],
                    "token_id": tid,
                    "before": float(clean_logits[tid]),
                    "after": float(logits[tid]),
                }
            )
    return InterventionResult(
        tokens=[model.tokenizer.decode([int(i)]) for i in ids],
        top_before=_top(model, clean_logits, top_k),
        top_after=_top(model, logits, top_k),
        logit_nodes=logit_nodes,
        downstream=downstream,
        applied=[{"node": t.iv.node, "mode": t.iv.mode, "value": t.iv.value} for t in targets],
        logits_before=clean_logits,
        logits_after=logits,
    )


def replacement_run(
    rm: ReplacementModel, run: RecordedRun, targets: list[Target], freeze: bool
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Last-position logits and every transcoder's activations ``[pos, d_tc]`` in the replacement model, with
    the error terms fixed at the clean run (error interventions: a residual add of the changed error)."""
    from neuroscope.transcoders.replacement import FeatureIntervention, ResidualAdd

    ivs, adds = [], []
    for t in targets:
        if t.kind == "feature":
            assert t.feature is not None
            mode, value = ("set", 0.0) if t.iv.mode == "ablate" else (t.iv.mode, t.iv.value)
            ivs.append(FeatureIntervention(t.layer, t.pos, t.feature, value, mode))
        else:
            err = rm.errors(run, t.layer)[t.pos]
            adds.append(ResidualAdd("mlp_out", t.layer, t.pos, t.iv.apply(err) - err))
    out = rm.forward(
        run.tokens,
        errors="fixed",
        interventions=ivs,
        adds=adds,
        freeze=run,
        freeze_attention=freeze,
        freeze_norms=freeze,
        record_acts=True,
    )
    return out.logits[0, -1], {l: a[0] for l, a in out.acts.items()}
