"""Provenance of an SAE feature: which upstream features, heads, MLPs, SAE errors and tokens make it fire.

One forward, then a local linearisation around it (:mod:`neuroscope.graphs.linear`): attention patterns and
norm scales frozen at this run's values, MLPs differentiated at their actual input. A feature's input (its
pre-activation) then splits exactly by path through the block below it:

- the **skip** connection: the residual below, itself split into that layer's SAE features, the SAE's
  **error** node and its decoder bias (at the bottom, the **tokens**, exactly);
- each **head together with its source position**: ``pattern[h, p, s] · v_h(s) · ∂child/∂z_h``, linear in
  the residual at ``s``, which splits the same way;
- the **MLP** at the position: its output's contribution (exact); its own parents are gradient × input at its
  input (the residual at ``p`` and, in sequential blocks, each head's output there).

Every edge is "parent's vector · gradient of the child's value", so each one can be checked by nudging the
parent in the frozen model (:func:`neuroscope.graphs.verify.check_edges`). Each node keeps its largest parents
until ``coverage`` of the total |weight| is covered (at most ``max_parents``); breadth-first, the features
with the largest influence on the target (path products of normalised weights) are expanded, up to
``max_expand`` per layer. Path nodes (heads, MLPs) belong to the one child they were computed for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import (
    GraphDepthError,
    IndexOutOfRangeError,
    InvalidConfigError,
    PromptTooLongError,
    SAENotInSuiteError,
)
from neuroscope.graphs import schema
from neuroscope.graphs.build import Builder
from neuroscope.graphs.streams import clean_run

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.suite import SAESuite

MAX_DEPTH = 4


@dataclass(frozen=True)
class ProvenanceConfig:
    """``depth``: layers upstream (1..4). ``coverage``/``max_parents``: per node, keep the largest parents until
    this share of the total |weight| (at most this many). ``max_expand``: features expanded per layer, largest
    influence on the target first (also stopping at ``coverage`` of the layer's influence).
    ``fold_identity``: fold skip edges between features whose decoder directions have cosine ≥
    ``identity_cos`` (the same feature persisting). ``max_tokens``: the prompt length limit."""

    depth: int = 2
    coverage: float = 0.8
    max_parents: int = 10
    max_expand: int = 8
    fold_identity: bool = True
    identity_cos: float = 0.8
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= MAX_DEPTH:
            raise GraphDepthError(self.depth, 1, MAX_DEPTH)
        if not 0 < self.coverage <= 1:
            raise InvalidConfigError(f"coverage must be in (0, 1], got {self.coverage}")
        if self.max_parents < 1 or self.max_expand < 1:
            raise InvalidConfigError("max_parents and max_expand must be >= 1")
        if not 0 < self.identity_cos <= 1:
            raise InvalidConfigError(f"identity_cos must be in (0, 1], got {self.identity_cos}")
        if self.max_tokens < 1:
            raise InvalidConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class ProvenanceGraph:
    model: str
    prompt: str
    tokens: list[str]
    target: dict[str, Any]
    nodes: list[schema.Node]
    edges: list[schema.Edge]
    n_streams: int
    meta: dict[str, Any] = field(default_factory=dict)

    def node(self, node_id: str) -> schema.Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def parents(self, node_id: str) -> list[tuple[schema.Edge, schema.Node]]:
        by_id = {n.id: n for n in self.nodes}
        return [(e, by_id[e.source]) for e in self.edges if e.target == node_id]

    def to_dict(self) -> dict[str, Any]:
        t = self.target
        return schema.document(
            "provenance",
            self.model,
            f"provenance of L{t['layer']} feature {t['feature']} at position {t['position']}",
            self.nodes,
            self.edges,
            self.tokens,
            schema.bands_for(self.n_streams),
            {**self.meta, "target": t, "prompt": self.prompt},
        )

    def figure(self):
        from neuroscope.graphs.figure import graph_figure

        return graph_figure(self.to_dict())

    def summary(self) -> str:
        t = self.target
        root = self.node(t["id"])
        lines = [
            f"L{t['layer']} feature {t['feature']} at {t['position']} ({self.tokens[t['position']]!r}): "
            f"activation {root.activation:.4g}, input {root.value:.4g}, error share {root.error_share:.3f}, "
            f"completeness {root.completeness:.3f}; {len(self.nodes)} nodes, {len(self.edges)} edges, "
            f"{self.meta.get('seconds', 0):.2f} s"
        ]
        for e, n in sorted(self.parents(t["id"]), key=lambda en: -abs(en[0].weight)):
            lines.append(f"  {e.weight:+10.4f}  {e.path:<10} {n.label}")
        return "\n".join(lines)


def check_reach(suite: SAESuite, layer: int, depth: int) -> tuple[int, int]:
    """The stream indices a graph of ``depth`` from ``layer`` spans: (lowest, target); every one needs an SAE
    except index 0 (the tokens)."""
    if layer not in suite.folders:
        raise SAENotInSuiteError(layer, suite.layers)
    top = suite.stream_index(layer)
    lo = top - depth
    if lo < 0:
        raise GraphDepthError(depth, 1, top)
    for j in range(max(lo, 1), top):
        if suite.layer_at(j) is None:
            missing = j - 1 if suite.hook == "resid_post" else j
            raise SAENotInSuiteError(missing, suite.layers, f"needed for depth {depth} from layer {layer}")
    return lo, top


# gradients are taken inside: callable from torch.inference_mode() (the server's model worker)
@torch.inference_mode(False)
def provenance(
    model: HookedModel,
    suite: SAESuite,
    layer: int,
    feature: int,
    prompt: str | torch.Tensor,
    position: int = -1,
    cfg: ProvenanceConfig | None = None,
) -> ProvenanceGraph:
    """The provenance graph of ``feature`` of the suite's layer-``layer`` SAE at ``position`` of ``prompt``."""
    cfg = cfg or ProvenanceConfig()
    t0 = time.perf_counter()
    lo, top = check_reach(suite, layer, cfg.depth)
    sae = suite.sae(layer, model)
    if not 0 <= feature < sae.d_sae:
        raise IndexOutOfRangeError("feature", feature, sae.d_sae)
    tokens = model.to_tokens(prompt)[0]
    n = tokens.shape[0]
    if n > cfg.max_tokens:
        raise PromptTooLongError(n, cfg.max_tokens)
    pos = position + n if position < 0 else position
    if not 0 <= pos < n:
        raise IndexOutOfRangeError("position", position, n)
    run = clean_run(model, tokens, lo, top, suite)
    str_tokens = [model.tokenizer.decode([int(i)]) for i in tokens]
    builder = Builder(model, suite, run, str_tokens, cfg)
    root = builder.add_root(top, feature, pos)
    frontier = [root]
    for j in range(top, lo, -1):
        frontier = builder.expand(j, frontier)
    if cfg.fold_identity:
        builder.fold_identity()
    nodes, edges = builder.finish()
    seconds = time.perf_counter() - t0
    return ProvenanceGraph(
        model=model.cfg.name,
        prompt=prompt if isinstance(prompt, str) else "",
        tokens=str_tokens,
        target={
            "id": root,
            "layer": layer,
            "feature": feature,
            "position": pos,
            "hook": suite.hook_name(layer),
        },
        nodes=nodes,
        edges=edges,
        n_streams=top + 1,
        meta={
            "seconds": round(seconds, 4),
            "depth": cfg.depth,
            "config": cfg.__dict__,
            "suite": str(suite.path),
            "frozen": "attention patterns and norm scales frozen at this run; MLPs differentiated at their input",
            "lowest_stream": lo,
            "token_ids": tokens.tolist(),
        },
    )
