"""Influence, pruning and the adjacency they run on, with circuit-tracer's definitions (``graph.py``:
``compute_influence``, ``find_threshold``, ``prune_graph``) computed on a sparse adjacency.

Rows are targets, columns sources. Influence is ``w @ (Â + Â² + …)`` for the row-normalised ``|A|`` and the
logit probabilities ``w``; circuit-tracer sums the series by repeated products, here the graph's layer order
(a feature's row has entries only from lower layers) gives the same sum in one pass over the entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from neuroscope.errors import ThresholdError


@dataclass
class Adjacency:
    """A sparse ``[n, n]`` adjacency in CSR form with its rows' topological order: ``groups`` lists row ranges
    (``start, end``) such that every row of a group only has entries from rows of later groups."""

    crow: torch.Tensor  # [n + 1] int64
    cols: torch.Tensor  # [nnz] int32
    vals: torch.Tensor  # [nnz] float32
    groups: list[tuple[int, int]]

    @property
    def n(self) -> int:
        return int(self.crow.shape[0]) - 1

    @property
    def nnz(self) -> int:
        return int(self.vals.shape[0])

    def entry_rows(self) -> torch.Tensor:
        counts = self.crow[1:] - self.crow[:-1]
        return torch.repeat_interleave(torch.arange(self.n, device=self.crow.device), counts)

    def row_abs_sum(self, vals: torch.Tensor | None = None) -> torch.Tensor:
        v = (self.vals if vals is None else vals).abs()
        out = torch.zeros(self.n, dtype=v.dtype, device=v.device)
        return out.index_add_(0, self.entry_rows(), v)

    def to_dense(self) -> torch.Tensor:
        """For small graphs and tests only: the ``[n, n]`` matrix."""
        dense = torch.zeros(self.n, self.n, dtype=self.vals.dtype)
        dense[self.entry_rows(), self.cols.long()] = self.vals
        return dense


def propagate(
    crow: torch.Tensor,
    cols: torch.Tensor,
    norm: torch.Tensor,
    groups: list[tuple[torch.Tensor, int, int]],
    w0: torch.Tensor,
) -> torch.Tensor:
    """``Σ_k w0 @ Â^k`` (k ≥ 1) where ``Â`` has entries ``norm`` (already normalised, ≥ 0). ``groups`` are
    ``(node ids of the rows, first row, end row)`` in topological order (targets before their sources)."""
    infl = torch.zeros_like(w0)
    for nodes, a, b in groups:
        if b <= a:
            continue
        w = w0[nodes] + infl[nodes]
        lo, hi = int(crow[a]), int(crow[b])
        if hi <= lo or not bool(w.any()):
            continue
        per = torch.repeat_interleave(w, crow[a + 1 : b + 1] - crow[a:b])
        infl.index_add_(0, cols[lo:hi].long(), norm[lo:hi] * per)
    return infl


def normalised(adj: Adjacency, vals: torch.Tensor | None = None, clamp: float = 1e-10) -> torch.Tensor:
    """``|A| / row sums of |A|`` per entry (circuit-tracer's ``normalize_matrix``)."""
    v = (adj.vals if vals is None else vals).abs()
    sums = adj.row_abs_sum(v).clamp(min=clamp)
    return v / sums[adj.entry_rows()]


def influence(adj: Adjacency, w0: torch.Tensor, vals: torch.Tensor | None = None) -> torch.Tensor:
    """Node influence on the weighted logits (circuit-tracer's ``compute_node_influence``)."""
    norm = normalised(adj, vals)
    groups = [(torch.arange(a, b), a, b) for a, b in adj.groups]
    return propagate(adj.crow, adj.cols, norm, groups, w0)


def find_threshold(scores: torch.Tensor, threshold: float, total: int | None = None) -> float:
    """The score at which the kept share of the (descending) cumulative score reaches ``threshold``.
    ``scores`` may be the nonzero entries of a larger array of ``total`` entries (the rest zero): circuit-tracer
    sorts the dense array, and a threshold its nonzero entries never reach lands on a zero there."""
    total = int(scores.numel()) if total is None else total
    s = torch.sort(scores[scores > 0], descending=True).values
    if s.numel() == 0:
        return 0.0
    cum = torch.cumsum(s, 0) / s.sum()
    idx = int(torch.searchsorted(cum, torch.tensor(threshold, dtype=cum.dtype)).item())
    if idx < s.numel():
        return float(s[idx])
    return 0.0 if total > s.numel() else float(s[-1])


def check_threshold(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) <= 1.0):
        raise ThresholdError(name, value)  # type: ignore[arg-type]
    return float(value)


class PruneResult(NamedTuple):
    node_mask: torch.Tensor  # [n] bool
    edge_mask: torch.Tensor  # [nnz] bool over the adjacency's stored entries
    cumulative_scores: torch.Tensor  # [n] each node's cumulative influence rank (circuit-tracer's)
    influence: torch.Tensor  # [n] node influence on the weighted logits


def prune(
    adj: Adjacency,
    n_features: int,
    n_tokens: int,
    logit_probs: torch.Tensor,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
) -> PruneResult:
    """circuit-tracer's ``prune_graph``: keep nodes up to ``node_threshold`` of the cumulative influence
    (tokens and logits always), then edges up to ``edge_threshold`` of the cumulative edge influence, then
    drop feature/error nodes left without outgoing edges and features without incoming ones, until stable."""
    check_threshold("node_threshold", node_threshold)
    check_threshold("edge_threshold", edge_threshold)
    n, n_logits = adj.n, int(logit_probs.shape[0])
    tail = n_logits + n_tokens
    w0 = torch.zeros(n)
    w0[-n_logits:] = logit_probs.float()
    infl = influence(adj, w0)
    node_mask = infl >= find_threshold(infl, node_threshold)
    node_mask[-tail:] = True
    rows, cols = adj.entry_rows(), adj.cols.long()
    kept = node_mask[rows] & node_mask[cols]
    pv = torch.where(kept, adj.vals.abs(), torch.zeros_like(adj.vals))
    norm = normalised(adj, pv)
    groups = [(torch.arange(a, b), a, b) for a, b in adj.groups]
    pinfl = propagate(adj.crow, adj.cols, norm, groups, w0) + w0
    scores = norm * pinfl[rows]
    thr = find_threshold(scores, edge_threshold, total=n * n)
    if thr <= 0.0:
        # circuit-tracer's dense mask then keeps every entry, zeros included: every node has edges
        edge_mask = torch.ones_like(kept)
    else:
        edge_mask = scores >= thr
        old = None
        while old is None or not torch.equal(old, node_mask):
            old = node_mask.clone()
            edge_mask &= node_mask[rows] & node_mask[cols]
            has_out = torch.zeros(n, dtype=torch.bool)
            has_out[cols[edge_mask]] = True
            has_in = torch.zeros(n, dtype=torch.bool)
            has_in[rows[edge_mask]] = True
            node_mask[:-tail] &= has_out[:-tail]
            node_mask[:n_features] &= has_in[:n_features]
    sorted_scores, order = torch.sort(infl, descending=True)
    cumulative = torch.zeros_like(infl)
    cumulative[order] = torch.cumsum(sorted_scores, 0) / sorted_scores.sum()
    return PruneResult(node_mask, edge_mask, cumulative, infl)
