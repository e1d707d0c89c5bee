"""Attribution graphs on transcoders against circuit-tracer's dense definitions, the scores with zero error
terms, the feature selection, the exports and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from transcoders_testutil import random_transcoders

from neuroscope.errors import GraphPromptTooLongError, IndexOutOfRangeError, ThresholdError
from neuroscope.graphs.schema import validate_graph
from neuroscope.transcoders.attribution import AttributionConfig, attribute
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
    from tinymodels import tiny

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


def test_recomputed_patterns_and_small_row_batches_give_the_same_graph(llama_graph):
    """Long prompts keep no attention pattern (each block's is recomputed when its rows need it) and split
    rows into small batches: the graph is the same."""
    rm, g = llama_graph
    small = attribute(rm, PROMPT, AttributionConfig(max_feature_nodes=None, pattern_mb=0, chunk_mb=1))
    assert small.stats["row_batches"] > 5
    torch.testing.assert_close(small.adjacency.to_dense(), g.adjacency.to_dense(), atol=1e-6, rtol=1e-5)


def test_exports_and_bad_input(llama_graph, tmp_path):
    rm, g = llama_graph
    doc = g.to_dict()
    validate_graph(json.loads(json.dumps(doc)))
    import jsonschema

    from neuroscope.graphs.schema import json_schema

    jsonschema.validate(json.loads(json.dumps(doc)), json_schema())
    # the server's model of the document (the UI's GraphDoc type) takes every kind the library writes
    from typing import get_args

    from neuroscope.graphs.schema import KINDS
    from neuroscope.server.schemas.graphs import GraphDocument

    assert set(get_args(GraphDocument.model_fields["kind"].annotation)) == set(KINDS)
    assert GraphDocument.model_validate(json.loads(json.dumps(doc))).model_dump()["kind"] == "attribution"
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
    from neuroscope.transcoders.graph import load_graph, save_graph

    back = load_graph(save_graph(g, tmp_path / "saved"))
    torch.testing.assert_close(back.adjacency.to_dense(), g.adjacency.to_dense())
    assert back.node_keys() == g.node_keys() and back.scores() == g.scores()
    with pytest.raises(GraphPromptTooLongError, match="limited to 8 tokens"):
        attribute(rm, PROMPT, AttributionConfig(max_tokens=8))


def test_cli_writes_both_formats_and_untrusted_json_is_validated(tiny_llama, tmp_path, capsys):
    from neuroscope.cli import main
    from neuroscope.errors import CorruptDataError
    from neuroscope.transcoders.ctformat import load_graph_json
    from neuroscope.transcoders.io import save_transcoder, write_manifest

    model = tiny_llama
    tcs = random_transcoders(model)
    folder = tmp_path / "tcs"
    for tc in tcs.transcoders.values():
        save_transcoder(tc, folder)
    write_manifest(folder, tcs[0].cfg, tcs.layers)
    out = tmp_path / "g.json"
    args = ["attribution-graph", "--model", "tiny:llama", "--transcoders", str(folder), "--prompt", PROMPT]
    args += ["--json", str(out), "--html", str(tmp_path / "g.html"), "--ct-dir", str(tmp_path / "ct")]
    assert main(args + ["--node-threshold", "0.6"]) == 0
    assert "replacement" in capsys.readouterr().out
    kind, doc = load_graph_json(out)
    assert kind == "neuroscope" and doc["meta"]["node_threshold"] == 0.6
    kind, ct = load_graph_json(tmp_path / "ct" / "neuroscope-graph.json")
    assert kind == "circuit-tracer" and ct["links"] and ct["metadata"]["node_threshold"] == 0.6
    types = {n["feature_type"] for n in ct["nodes"]}
    assert {"embedding", "logit", "cross layer transcoder"} <= types
    assert (
        json.loads((tmp_path / "ct" / "graph-metadata.json").read_text())["graphs"][0]["slug"]
        == "neuroscope-graph"
    )
    assert (tmp_path / "g.html").stat().st_size > 1000
    # untrusted files: bad structure, unknown link ends, non-finite weights, non-JSON are refused by name
    bad = dict(ct, links=[{"source": "nope", "target": ct["nodes"][0]["node_id"], "weight": 1.0}])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CorruptDataError, match="unknown nodes"):
        load_graph_json(tmp_path / "bad.json")
    link = dict(ct["links"][0], weight=float("nan"))
    (tmp_path / "nan.json").write_text(json.dumps(dict(ct, links=[link])))
    with pytest.raises(CorruptDataError, match="finite"):
        load_graph_json(tmp_path / "nan.json")
    (tmp_path / "code.json").write_text("__import__('os').system('true')")
    with pytest.raises(CorruptDataError, match="not JSON"):
        load_graph_json(tmp_path / "code.json")
    capsys.readouterr()
    assert main(
        ["attribution-graph", "--model", "tiny:gemma", "--transcoders", str(folder), "--prompt", PROMPT]
    )
    assert "trained on 'tiny:llama', not on 'tiny:gemma'" in capsys.readouterr().err
