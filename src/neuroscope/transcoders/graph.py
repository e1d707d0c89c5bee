"""An attribution graph: nodes in circuit-tracer's order, a sparse adjacency (rows = targets), and what it
exports: the project's graph document (``neuroscope-graph/1``, kind ``attribution``) and circuit-tracer's
frontend JSON (:mod:`neuroscope.transcoders.ctformat`).

Node order: selected features (by active index: layer, position, feature), error nodes (``layer * n_pos +
pos``), token nodes (by position), logit nodes (by probability). Node ids: ``f_{layer}_{pos}_{feature}``,
``e_{layer}_{pos}``, ``t_{pos}``, ``l_{token_id}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.errors import IndexOutOfRangeError
from neuroscope.graphs.schema import Edge, Node, bands_for, document
from neuroscope.transcoders.prune import Adjacency, PruneResult, prune
from neuroscope.transcoders.scores import GraphScores, graph_scores

if TYPE_CHECKING:
    from neuroscope.transcoders.attribution import AttributionConfig

NodeKey = (
    tuple  # ("feature", layer, pos, feature) | ("error", layer, pos) | ("token", pos) | ("logit", token_id)
)


@dataclass
class AttributionGraph:
    model_name: str
    tokens: torch.Tensor  # [pos] token ids (the prepended special token first)
    token_strs: list[str]
    n_layers: int
    active_features: torch.Tensor  # [n_active, 3] (layer, pos, feature), sorted
    activation_values: torch.Tensor  # [n_active]
    selected_features: torch.Tensor  # [n_features] indices into active_features (the feature nodes)
    logit_tokens: torch.Tensor  # [n_logits]
    logit_probabilities: torch.Tensor  # [n_logits]
    logit_strs: list[str]
    adjacency: Adjacency
    config: AttributionConfig
    timings: dict[str, float] = field(default_factory=dict)
    _scores: GraphScores | None = None

    # --- sizes and nodes -------------------------------------------------------------------------------
    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.selected_features.shape[0])

    @property
    def n_logits(self) -> int:
        return int(self.logit_tokens.shape[0])

    @property
    def n_nodes(self) -> int:
        return self.adjacency.n

    @property
    def error_offset(self) -> int:
        return self.n_features

    @property
    def token_offset(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_offset(self) -> int:
        return self.token_offset + self.n_pos

    def node_key(self, i: int) -> NodeKey:
        if not 0 <= i < self.n_nodes:
            raise IndexOutOfRangeError("node", i, self.n_nodes)
        if i < self.n_features:
            l, p, f = (int(v) for v in self.active_features[self.selected_features[i]])
            return ("feature", l, p, f)
        if i < self.token_offset:
            l, p = divmod(i - self.n_features, self.n_pos)
            return ("error", l, p)
        if i < self.logit_offset:
            return ("token", i - self.token_offset)
        return ("logit", int(self.logit_tokens[i - self.logit_offset]))

    def node_keys(self) -> list[NodeKey]:
        return [self.node_key(i) for i in range(self.n_nodes)]

    def node_id(self, i: int) -> str:
        kind, *rest = self.node_key(i)
        return f"{kind[0]}_" + "_".join(str(v) for v in rest)

    def node_index(self, key: NodeKey) -> int:
        """Index of a node given by its key; a position, layer or feature out of range is a named error."""
        kind = key[0]
        if kind in ("feature", "error"):
            if not 0 <= key[1] < self.n_layers:
                raise IndexOutOfRangeError("layer", key[1], self.n_layers)
            if not 0 <= key[2] < self.n_pos:
                raise IndexOutOfRangeError("position", key[2], self.n_pos)
            if kind == "error":
                return self.error_offset + key[1] * self.n_pos + key[2]
            sel = self.active_features[self.selected_features]
            hit = ((sel[:, 0] == key[1]) & (sel[:, 1] == key[2]) & (sel[:, 2] == key[3])).nonzero()
            if hit.numel() == 0:
                raise IndexOutOfRangeError("feature node", key[3], self.n_features)
            return int(hit[0, 0])
        if kind == "token":
            if not 0 <= key[1] < self.n_pos:
                raise IndexOutOfRangeError("position", key[1], self.n_pos)
            return self.token_offset + key[1]
        hit = (self.logit_tokens == key[1]).nonzero()
        if kind != "logit" or hit.numel() == 0:
            raise IndexOutOfRangeError("logit node", key[1], self.n_logits)
        return self.logit_offset + int(hit[0, 0])

    # --- edges, scores, pruning ------------------------------------------------------------------------
    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(targets, sources, weights) of every nonzero entry: what a comparison with another graph reads."""
        adj = self.adjacency
        return adj.entry_rows().numpy(), adj.cols.long().numpy(), adj.vals.numpy()

    def edge_dict(self) -> dict[tuple[NodeKey, NodeKey], float]:
        """``{(target key, source key): weight}`` (small graphs: builds a key per node)."""
        keys = self.node_keys()
        t, s, w = self.edges()
        return {(keys[a], keys[b]): float(v) for a, b, v in zip(t, s, w, strict=True)}

    def scores(self) -> GraphScores:
        if self._scores is None:
            self._scores = graph_scores(
                self.adjacency, self.n_features, self.n_layers, self.n_pos, self.logit_probabilities
            )
        return self._scores

    def prune(self, node_threshold: float | None = None, edge_threshold: float | None = None) -> PruneResult:
        return prune(
            self.adjacency,
            self.n_features,
            self.n_pos,
            self.logit_probabilities,
            self.config.node_threshold if node_threshold is None else node_threshold,
            self.config.edge_threshold if edge_threshold is None else edge_threshold,
        )

    def summary(self) -> str:
        s = self.scores()
        return (
            f"attribution graph: {self.n_pos} tokens, {self.active_features.shape[0]} active features, "
            f"{self.n_features} feature nodes, {self.n_logits} logits, {self.adjacency.nnz} edges; "
            f"replacement {s.replacement:.3f}, completeness {s.completeness:.3f}"
        )

    # --- documents ------------------------------------------------------------------------------------
    def to_dict(
        self, node_threshold: float | None = None, edge_threshold: float | None = None
    ) -> dict[str, Any]:
        """The pruned graph as a ``neuroscope-graph/1`` document (kind ``attribution``)."""
        pr = self.prune(node_threshold, edge_threshold)
        rows = self.adjacency.entry_rows()
        cols = self.adjacency.cols.long()
        keep = pr.edge_mask & (self.adjacency.vals != 0) & pr.node_mask[rows] & pr.node_mask[cols]
        used = set(rows[keep].tolist()) | set(cols[keep].tolist())
        used |= set(range(self.token_offset, self.n_nodes))
        nodes = [self._node(i, pr) for i in sorted(used) if bool(pr.node_mask[i])]
        edges = [
            Edge(self.node_id(int(s)), self.node_id(int(t)), float(w), "direct")
            for t, s, w in zip(
                rows[keep].tolist(), cols[keep].tolist(), self.adjacency.vals[keep].tolist(), strict=True
            )
        ]
        bands = bands_for(self.n_layers + 1) + [{"band": self.n_layers + 0.5, "label": "logits"}]
        cfg = self.config
        meta = {
            "scores": self.scores().to_dict(),
            "node_threshold": cfg.node_threshold if node_threshold is None else node_threshold,
            "edge_threshold": cfg.edge_threshold if edge_threshold is None else edge_threshold,
            "n_active_features": int(self.active_features.shape[0]),
            "n_feature_nodes": self.n_features,
            "n_edges_unpruned": self.adjacency.nnz,
            "logits": [
                {"token": s, "id": int(t), "prob": float(p)}
                for s, t, p in zip(self.logit_strs, self.logit_tokens, self.logit_probabilities, strict=True)
            ],
            "config": cfg.to_dict(),
            "timings": self.timings,
            "definitions": "circuit-tracer 0.5: direct effects, attention patterns and norm scales frozen",
        }
        title = f"attribution graph: {''.join(self.token_strs[1:])!r} -> {self.logit_strs[0]!r}"
        return document("attribution", self.model_name, title, nodes, edges, self.token_strs, bands, meta)

    def _node(self, i: int, pr: PruneResult) -> Node:
        key = self.node_key(i)
        infl, cum = float(pr.influence[i]), float(pr.cumulative_scores[i])
        extra = {"influence": cum}
        if key[0] == "feature":
            _, l, p, f = key
            act = float(self.activation_values[self.selected_features[i]])
            return Node(
                self.node_id(i), "feature", l + 0.7, f"L{l} #{f}", l, p, infl, None, act, f, extra=extra
            )
        if key[0] == "error":
            _, l, p = key
            return Node(self.node_id(i), "error", l + 0.7, f"err L{l}", l, p, infl, extra=extra)
        if key[0] == "token":
            p = key[1]
            return Node(self.node_id(i), "token", 0.0, self.token_strs[p], None, p, infl, extra=extra)
        j = i - self.logit_offset
        label = f"{self.logit_strs[j]!r} p={float(self.logit_probabilities[j]):.3f}"
        extra = {**extra, "token_id": key[1], "prob": float(self.logit_probabilities[j])}
        return Node(
            self.node_id(i), "logits", self.n_layers + 0.5, label, None, self.n_pos - 1, infl, extra=extra
        )

    def figure(self, node_threshold: float | None = None, edge_threshold: float | None = None):
        from neuroscope.graphs.figure import graph_figure

        return graph_figure(self.to_dict(node_threshold, edge_threshold))
