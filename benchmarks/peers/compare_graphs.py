"""Compare circuit-tracer's graph (dense adjacency, from ct_graph.py) with NeuroScope's (CSR, from
ours_graph.py) node by node: nodes are matched by identity, not by index (feature = (layer, pos, feature id),
error = (layer, pos), token = pos, logit = token id), so a different node order is not a difference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

# entries smaller than this fraction of the largest |entry| are float noise for a relative comparison
REL_FLOOR = 1e-4


def node_keys(g: dict[str, torch.Tensor], n_layers: int) -> list[tuple]:
    feats = g["active_features"][g["selected_features"]].tolist()
    n_pos = int(g["input_tokens"].numel())
    keys: list[tuple] = [("f", *f) for f in feats]
    keys += [("e", layer, pos) for layer in range(n_layers) for pos in range(n_pos)]
    keys += [("t", pos) for pos in range(n_pos)]
    keys += [("l", int(t)) for t in g["logit_tokens"].tolist()]
    return keys


def sets(a: set, b: set) -> dict[str, Any]:
    return {
        "equal": a == b,
        "circuit_tracer": len(a),
        "neuroscope": len(b),
        "only_ct": len(a - b),
        "only_ours": len(b - a),
    }


def compare(ct_path: Path, ours_path: Path) -> dict[str, Any]:
    ct, ours = load_file(str(ct_path)), load_file(str(ours_path))
    n_pos = int(ct["input_tokens"].numel())
    n_ct = ct["adjacency"].shape[0]
    n_layers = (
        n_ct - ct["selected_features"].numel() - ct["logit_tokens"].numel()
    ) // n_pos - 1  # errors + tokens
    k_ct, k_ours = node_keys(ct, n_layers), node_keys(ours, n_layers)
    index_ct = {k: i for i, k in enumerate(k_ct)}
    out: dict[str, Any] = {
        "same_tokens": torch.equal(ct["input_tokens"], ours["input_tokens"]),
        "logits": {
            "ct": ct["logit_tokens"].tolist(),
            "ours": ours["logit_tokens"].tolist(),
            "max_prob_diff": float((ct["logit_probabilities"] - ours["logit_probabilities"]).abs().max())
            if ct["logit_tokens"].shape == ours["logit_tokens"].shape
            else None,
        },
        "active_features": sets(
            {tuple(x) for x in ct["active_features"].tolist()},
            {tuple(x) for x in ours["active_features"].tolist()},
        ),
        "selected_features": sets({k for k in k_ct if k[0] == "f"}, {k for k in k_ours if k[0] == "f"}),
    }
    out["selected_features_equal"] = out["selected_features"]["equal"]
    # ours' entries, mapped into circuit-tracer's index space (nodes only ours has are counted, not compared)
    crow, cols, vals = ours["crow"], ours["cols"], ours["vals"]
    rows = torch.repeat_interleave(torch.arange(crow.numel() - 1), crow[1:] - crow[:-1])
    to_ct = torch.tensor([index_ct.get(k, -1) for k in k_ours])
    r, c = to_ct[rows], to_ct[cols]
    both = (r >= 0) & (c >= 0)
    a_ct = ct["adjacency"]
    theirs = a_ct[r[both], c[both]]
    mine = vals[both]
    scale = float(a_ct.abs().max())
    big = torch.maximum(theirs.abs(), mine.abs())
    judged = big > REL_FLOOR * scale
    rel = (theirs - mine).abs() / big.clamp_min(1e-30)
    covered = torch.zeros_like(a_ct, dtype=torch.bool)
    covered[r[both], c[both]] = True
    missing = (a_ct != 0) & ~covered
    out["edges"] = {
        "ct_nonzero": int((a_ct != 0).sum()),
        "ours_stored": int(vals.numel()),
        "compared": int(both.sum()),
        "ct_nonzero_not_in_ours": int(missing.sum()),
        "max_abs_missing": float(a_ct[missing].abs().max()) if missing.any() else 0.0,
        "max_abs_diff": float((theirs - mine).abs().max()) if mine.numel() else 0.0,
        "max_abs_entry": scale,
        "judged": int(judged.sum()),
        "max_rel_diff": float(rel[judged].max()) if judged.any() else 0.0,
        "frac_within_1e-3": float((rel[judged] <= 1e-3).float().mean()) if judged.any() else 1.0,
        "rel_floor": REL_FLOOR,
        "max_rel_diff_floor_1e-6": float(rel[big > 1e-6 * scale].max())
        if (big > 1e-6 * scale).any()
        else 0.0,
        "frobenius_rel": float((theirs - mine).norm() / a_ct.norm().clamp_min(1e-30)),
    }
    del covered, missing
    nm_ct, nm_ours = ct["node_mask"], ours["node_mask"]
    out["pruned_nodes"] = sets(
        {k_ct[i] for i in nm_ct.nonzero().flatten().tolist()},
        {k_ours[i] for i in nm_ours.nonzero().flatten().tolist()},
    )
    out["pruned_nodes_equal"] = out["pruned_nodes"]["equal"]
    e_ct = ct["edge_mask"].nonzero()
    ct_edges = {(k_ct[i], k_ct[j]) for i, j in e_ct.tolist()}
    em = ours["edge_mask"]
    ours_edges = {(k_ours[i], k_ours[j]) for i, j in zip(rows[em].tolist(), cols[em].tolist(), strict=True)}
    # circuit-tracer's mask also keeps entries that are zero; compare the edges that carry a weight
    ct_weighted = {(k_ct[i], k_ct[j]) for i, j in e_ct.tolist() if a_ct[i, j] != 0}
    ours_weighted = {
        (k_ours[i], k_ours[j])
        for i, j, v in zip(rows[em].tolist(), cols[em].tolist(), vals[em].tolist(), strict=True)
        if v != 0
    }
    out["pruned_edges"] = sets(ct_edges, ours_edges)
    out["pruned_weighted_edges"] = sets(ct_weighted, ours_weighted)
    return out
