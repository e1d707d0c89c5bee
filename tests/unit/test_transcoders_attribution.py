"""Attribution graphs on transcoders against circuit-tracer's dense definitions, the scores with zero error
terms, the feature selection, the exports and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from transcoders_testutil import exact_transcoders, random_transcoders

from neuroscope.errors import GraphPromptTooLongError, IndexOutOfRangeError, ThresholdError
from neuroscope.graphs.schema import validate_graph
from neuroscope.transcoders.attribution import AttributionConfig, attribute, prepare_tokens
from neuroscope.transcoders.checks import check_edges
from neuroscope.transcoders.replacement import ReplacementModel

PROMPT = "The cat sat on the mat"


# --- circuit-tracer 0.5's dense definitions (circuit_tracer/graph.py), as the reference -----------------------
def ct_normalize(m):
    m = m.abs()
    return m / m.sum(dim=1, keepdim=True).clamp(min=1e-10)


def ct_influence(A, w):
    cur = w @ A
    infl = cur
    while cur.any():
        cur = cur @ A
        infl = infl + cur
    return infl


def ct_find_threshold(scores, threshold):
    s = torch.sort(scores, descending=True).values
    cum = torch.cumsum(s, dim=0) / torch.sum(s)
    return s[min(int(torch.searchsorted(cum, threshold).item()), len(cum) - 1)]


def ct_prune(A, n_features, n_tokens, probs, node_threshold, edge_threshold):
    n_logits = len(probs)
    w = torch.zeros(A.shape[0])
    w[-n_logits:] = probs
    infl = ct_influence(ct_normalize(A), w)
    node_mask = infl >= ct_find_threshold(infl, node_threshold)
    node_mask[-n_logits - n_tokens :] = True
    P = A.clone()
    P[~node_mask] = 0
    P[:, ~node_mask] = 0
    Pn = ct_normalize(P)
    pinfl = ct_influence(Pn, w) + w
    scores = Pn * pinfl[:, None]
    edge_mask = scores >= ct_find_threshold(scores.flatten(), edge_threshold)
    old = node_mask.clone()
    node_mask[: -n_logits - n_tokens] &= edge_mask[:, : -n_logits - n_tokens].any(0)
    node_mask[:n_features] &= edge_mask[:n_features].any(1)
    while not torch.all(node_mask == old):
        old[:] = node_mask
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[: -n_logits - n_tokens] &= edge_mask[:, : -n_logits - n_tokens].any(0)
        node_mask[:n_features] &= edge_mask[:n_features].any(1)
    return node_mask, edge_mask


def ct_scores(A, n_features, n_layers, n_pos, probs):
    n_logits = len(probs)
    err_end = n_features + n_pos * n_layers
    w = torch.zeros(A.shape[0])
    w[-n_logits:] = probs
    An = ct_normalize(A)
    infl = ct_influence(An, w)
    tok, err = infl[err_end : err_end + n_pos].sum(), infl[n_features:err_end].sum()
    nef = 1 - An[:, n_features:err_end].sum(dim=-1)
    out = infl + w
    return float(tok / (tok + err)), float((nef * out).sum() / out.sum())


@pytest.fixture(scope="module")
def llama_graph():
    from conftest import tiny

    model = tiny("llama")
    rm = ReplacementModel(model, random_transcoders(model))
    return rm, attribute(rm, PROMPT, AttributionConfig(max_feature_nodes=None))


@pytest.mark.parametrize("thresholds", [(0.8, 0.98), (0.5, 0.7), (1.0, 1.0)])
def test_pruning_and_scores_match_circuit_tracers_dense_definitions(llama_graph, thresholds):
    _, g = llama_graph
    A = g.adjacency.to_dense()
    assert A.shape == (g.n_nodes, g.n_nodes) and g.n_features == g.active_features.shape[0]
    node_t, edge_t = thresholds
    ref_nodes, ref_edges = ct_prune(A, g.n_features, g.n_pos, g.logit_probabilities, node_t, edge_t)
    pr = g.prune(node_t, edge_t)
    assert torch.equal(pr.node_mask, ref_nodes)
    rows, cols = g.adjacency.entry_rows(), g.adjacency.cols.long()
    differ = int((pr.edge_mask != ref_edges[rows, cols]).sum())
    if edge_t < 1.0:
        assert differ == 0 and int(ref_edges.sum()) == int(pr.edge_mask.sum())
    else:  # at 1.0 the cut is where float rounding of the cumulative sum first reaches 1
        assert differ <= max(1, g.adjacency.nnz // 1000)
    rep, comp = ct_scores(A, g.n_features, g.n_layers, g.n_pos, g.logit_probabilities)
    s = g.scores()
    assert abs(s.replacement - rep) < 1e-5 and abs(s.completeness - comp) < 1e-5
    assert 0.0 < s.replacement < 1.0 and 0.0 < s.completeness < 1.0


def test_max_feature_nodes_picks_circuit_tracers_features(llama_graph):
    """With fewer feature nodes than active features, the features expanded are circuit-tracer's: its loop
    (logit rows, then batches of the highest partial influence) replayed on the full graph's rows."""
    rm, full = llama_graph
    A = full.adjacency.to_dense()  # every row is the same whatever is selected
    n_f, n_log = full.n_features, full.n_logits
    cfg = AttributionConfig(max_feature_nodes=50, batch_size=8, update_interval=2)
    g = attribute(rm, PROMPT, cfg)
    logit_rows = torch.arange(A.shape[0] - n_log, A.shape[0])
    rows = [int(r) for r in logit_rows]
    visited = torch.zeros(n_f, dtype=torch.bool)
    while int(visited.sum()) < 50:
        edge = A[rows]
        norm = edge.abs() / edge.abs().sum(1, keepdim=True).clamp(min=1e-8)
        prod = torch.zeros(A.shape[1])
        prod[logit_rows] = full.logit_probabilities
        infl = torch.zeros(A.shape[1])
        idx = torch.tensor(rows)
        for _ in range(128):
            prod = prod[idx] @ norm
            if not prod.any():
                break
            infl += prod
        rank = torch.argsort(infl[:n_f], descending=True)
        pending = rank[~visited[rank]][: min(16, 50 - int(visited.sum()))]
        visited[pending] = True
        rows += pending.tolist()
    assert torch.equal(g.selected_features, visited.nonzero().squeeze(1))
    sub = torch.cat([g.selected_features, torch.arange(n_f, A.shape[0])])
    want = A[sub][:, sub]
    want[g.n_features : -n_log] = 0  # error and token rows are empty
    torch.testing.assert_close(g.adjacency.to_dense(), want)


def test_scores_are_one_when_the_error_terms_are_zero(tiny_llama):
    model = tiny_llama
    tokens = prepare_tokens(model, PROMPT)
    run = ReplacementModel(model, random_transcoders(model)).record(tokens)
    rm = ReplacementModel(model, exact_transcoders(model, run))
    g = attribute(rm, tokens, AttributionConfig(max_feature_nodes=None))
    s = g.scores()
    assert abs(s.replacement - 1.0) < 1e-4 and abs(s.completeness - 1.0) < 1e-4, s
    assert check_edges(rm, g, n=30).max_rel_error < 1e-4


def test_exports_and_bad_input(llama_graph, tmp_path):
    rm, g = llama_graph
    doc = g.to_dict()
    validate_graph(json.loads(json.dumps(doc)))
    assert doc["kind"] == "attribution" and doc["meta"]["scores"]["replacement"] == g.scores().replacement
    ids = {n["id"] for n in doc["nodes"]}
    assert {f"l_{int(t)}" for t in g.logit_tokens} <= ids and "t_0" in ids
    assert g.node_index(g.node_key(5)) == 5
    with pytest.raises(IndexOutOfRangeError, match="position"):
        g.node_index(("token", g.n_pos))
    with pytest.raises(ThresholdError, match="node_threshold"):
        g.prune(node_threshold=0.0)
    with pytest.raises(ThresholdError, match="edge_threshold"):
        AttributionConfig(edge_threshold=1.5)
    with pytest.raises(GraphPromptTooLongError, match="limited to 8 tokens"):
        attribute(rm, PROMPT, AttributionConfig(max_tokens=8))
