"""Attribution-graph edges checked by real interventions in the replacement model.

With attention and norm scales frozen to the recorded run, every feature activation held at its recorded
value and every error term fixed (``features="frozen"``, ``errors="fixed"``), the replacement model is linear
in what a source node adds to the residual. So adding a source's vector once more (a feature's activation
doubled, an error or a token embedding added again) must change the target's input (a feature's
pre-activation, a logit's demeaned direction at the final norm's output) by exactly the edge's weight.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.transcoders.replacement import FeatureIntervention, ResidualAdd

if TYPE_CHECKING:
    from neuroscope.transcoders.graph import AttributionGraph
    from neuroscope.transcoders.replacement import RecordedRun, ReplacementModel


@dataclass
class EdgeCheck:
    target: str
    source: str
    weight: float
    measured: float


@dataclass
class EdgeCheckResult:
    checks: list[EdgeCheck]
    max_abs_error: float
    max_rel_error: float  # relative to the largest |weight| checked

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": len(self.checks)}


def _target_value(rm: ReplacementModel, graph: AttributionGraph, out: Any, key: tuple) -> torch.Tensor:
    if key[0] == "feature":
        _, l, p, f = key
        return out.pre[l][0, p, f]
    W_U = rm.model.W_U
    vec = W_U[:, key[1]] - W_U.mean(dim=-1)
    return out.final[0, -1] @ vec.to(out.final.dtype)


def _source_change(rm: ReplacementModel, run: RecordedRun, key: tuple) -> dict[str, Any]:
    if key[0] == "feature":
        _, l, p, f = key
        return {"interventions": [FeatureIntervention(l, p, f, 2.0, "scale")]}
    if key[0] == "error":
        _, l, p = key
        # the graph's error node at the first position is zero by definition (circuit-tracer's)
        vec = rm.errors(run, l)[p] * (1.0 if p > 0 else 0.0)
        return {"adds": [ResidualAdd("mlp_out", l, p, vec)]}
    return {"adds": [ResidualAdd("embed", 0, key[1], run.embed[key[1]])]}


@torch.no_grad()
def check_edges(
    rm: ReplacementModel,
    graph: AttributionGraph,
    pairs: list[tuple[int, int]] | None = None,
    n: int = 20,
    seed: int = 0,
) -> EdgeCheckResult:
    """Measure ``pairs`` of (target node, source node) indices, or ``n`` random nonzero edges, by intervening."""
    run = rm.record(graph.tokens.to(rm.model.device))
    if pairs is None:
        t, s, _ = graph.edges()
        idx = random.Random(seed).sample(range(len(t)), min(n, len(t)))
        pairs = [(int(t[i]), int(s[i])) for i in idx]
    dense_rows: dict[int, dict[int, float]] = {}
    t_all, s_all, w_all = graph.edges()
    for a, b, w in zip(t_all, s_all, w_all, strict=True):
        dense_rows.setdefault(int(a), {})[int(b)] = float(w)
    base_kw = dict(errors="fixed", features="frozen", freeze=run, record_pre=True, record_final=True)
    base = rm.forward(run.tokens, **base_kw)  # type: ignore[arg-type]
    checks = []
    for ti, si in pairs:
        tk, sk = graph.node_key(ti), graph.node_key(si)
        new = rm.forward(run.tokens, **base_kw, **_source_change(rm, run, sk))  # type: ignore[arg-type]
        measured = float(_target_value(rm, graph, new, tk) - _target_value(rm, graph, base, tk))
        checks.append(
            EdgeCheck(graph.node_id(ti), graph.node_id(si), dense_rows.get(ti, {}).get(si, 0.0), measured)
        )
    if not checks:
        return EdgeCheckResult([], 0.0, 0.0)
    err = max(abs(c.weight - c.measured) for c in checks)
    scale = max(max(abs(c.weight) for c in checks), 1e-12)
    return EdgeCheckResult(checks, err, err / scale)
