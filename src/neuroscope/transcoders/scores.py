"""A graph's replacement and completeness scores, as circuit-tracer computes them (``compute_graph_scores``).

- Replacement score: of the influence the input tokens and the error nodes have on the weighted logits, the
  share the tokens have (paths that end in the tokens rather than in a transcoder's error).
- Completeness score: per node, the share of its normalised input that does not come straight from error
  nodes, averaged with the weights ``influence + logit weight``.

Both are 1 when every error term is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuroscope.transcoders.prune import Adjacency, influence, normalised


@dataclass(frozen=True)
class GraphScores:
    replacement: float
    completeness: float

    def to_dict(self) -> dict[str, float]:
        return {"replacement": self.replacement, "completeness": self.completeness}


def graph_scores(
    adj: Adjacency, n_features: int, n_layers: int, n_pos: int, logit_probs: torch.Tensor
) -> GraphScores:
    n, n_logits = adj.n, int(logit_probs.shape[0])
    err_lo, err_hi = n_features, n_features + n_layers * n_pos
    tok_hi = err_hi + n_pos
    w0 = torch.zeros(n)
    w0[-n_logits:] = logit_probs.float()
    infl = influence(adj, w0)
    token = infl[err_hi:tok_hi].sum()
    error = infl[err_lo:err_hi].sum()
    replacement = token / (token + error)
    norm = normalised(adj)
    cols = adj.cols.long()
    from_err = torch.where((cols >= err_lo) & (cols < err_hi), norm, torch.zeros_like(norm))
    err_share = torch.zeros(n).index_add_(0, adj.entry_rows(), from_err)
    out = infl + w0
    completeness = ((1 - err_share) * out).sum() / out.sum()
    return GraphScores(float(replacement), float(completeness))
