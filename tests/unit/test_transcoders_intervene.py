"""Interventions from the graph, checked against the linear effect they must have and against each other."""

from __future__ import annotations

import pytest
import torch
from tinymodels import tiny
from transcoders_testutil import PROMPT, random_transcoders

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, UnknownGraphNodeError
from neuroscope.graphs.linear import frozen_norm
from neuroscope.transcoders.attribution import AttributionConfig, attribute
from neuroscope.transcoders.intervene import NodeIntervention, intervene
from neuroscope.transcoders.replacement import ReplacementModel
from neuroscope.transcoders.supernodes import SupernodeSpec

# gemma2 soft-caps its final logits (not linear in the residual); every other family is covered
LINEAR_HEADS = ("llama", "qwen3", "gemma", "gemma3_text", "phi3", "gpt_neox", "gpt2")


@pytest.mark.parametrize("kind", LINEAR_HEADS)
def test_ablation_moves_logits_by_the_direct_effect(kind):
    """With attention, norms and errors frozen, a last-layer feature at the last position reaches the logits
    only directly: ablating it moves every logit by −activation · W_dec[f] through the frozen final norm."""
    model = tiny(kind)
    tcs = random_transcoders(model)
    last = model.cfg.n_layers - 1
    rm = ReplacementModel(model, tcs)
    run = rm.record(model.to_tokens(PROMPT)[0])
    p = run.n_pos - 1
    acts = rm.clean_activations(run, last)[p]
    f = int(acts.argmax())
    assert acts[f] > 0
    node = f"f_{last}_{p}_{f}"
    r = intervene(model, tcs, PROMPT, [NodeIntervention(node)], freeze=True)
    norm = model.hf_model.get_submodule(model.adapter.final_norm)
    s, k = run.final_scale[p : p + 1], model.cfg.normalization
    zero = torch.zeros(1, model.cfg.d_model)
    write = frozen_norm(norm, -acts[f] * tcs[last].W_dec[f][None], s, k) - frozen_norm(norm, zero, s, k)
    expected = (write @ model.W_U.float())[0]
    got = r.logits_after - r.logits_before
    assert expected.abs().max() > 1e-2 and torch.allclose(got, expected, atol=1e-4), (
        (got - expected).abs().max()
    )
    assert r.applied == [{"node": node, "mode": "ablate", "value": 0.0}]
    fig = r.figure()  # before/after bars over the union of both top lists
    top = r.top_before[0]
    assert fig.data[0].y[0] == pytest.approx(top["prob"]) and len(fig.data[1].y) == len(fig.data[0].y)


def _graph(model, tcs) -> dict:
    """A graph document with every active feature and error node (what a built graph names)."""
    rm = ReplacementModel(model, tcs)
    run = rm.record(model.to_tokens(PROMPT)[0])
    nodes = []
    for l in tcs.layers:
        for p, f in rm.clean_activations(run, l).nonzero().tolist():
            nodes.append({"id": f"f_{l}_{p}_{f}", "type": "feature", "layer": l, "feature": f, "pos": p})
        nodes += [{"id": f"e_{l}_{p}", "type": "error", "layer": l, "pos": p} for p in range(run.n_pos)]
    top = int(run.logits.argmax())
    nodes.append({"id": f"l_{top}", "type": "logits", "token_id": top})
    return {"nodes": nodes, "edges": []}


def test_downstream_supernodes_and_errors(tiny_llama):
    tcs = random_transcoders(tiny_llama)
    graph = _graph(tiny_llama, tcs)
    early = [n for n in graph["nodes"] if n["type"] == "feature" and n["layer"] == 0 and n["pos"] == 3]
    r = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention(early[0]["id"], "scale", 5.0)], graph)
    # later layers' features at later positions respond; the intervened node is not among them
    assert r.downstream and all(d["layer"] == 1 and d["pos"] >= 3 for d in r.downstream)
    assert early[0]["id"] not in {d["id"] for d in r.downstream}
    assert r.logit_nodes[0]["before"] != r.logit_nodes[0]["after"]
    # a memo keeps the recorded run and the clean forward between calls, for this prompt only
    memo: dict = {}
    again = [
        intervene(tiny_llama, tcs, PROMPT, [NodeIntervention(early[0]["id"], "scale", 5.0)], graph, memo=memo)
    ]
    run = memo["run"]
    again.append(
        intervene(tiny_llama, tcs, PROMPT, [NodeIntervention(early[0]["id"], "scale", 5.0)], graph, memo=memo)
    )
    assert memo["run"] is run and all(
        a.top_after == r.top_after and a.downstream == r.downstream for a in again
    )
    intervene(tiny_llama, tcs, PROMPT + "!", [NodeIntervention(early[0]["id"])], memo=memo)
    assert memo["run"] is not run
    # a supernode is its members, with the same mode and value
    spec = SupernodeSpec.from_dict(
        {"groups": [{"id": "sn0", "name": "x", "members": [n["id"] for n in early]}]}
    )
    by_group = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("sn0")], graph, spec)
    by_nodes = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention(n["id"]) for n in early], graph)
    assert by_group.top_after == by_nodes.top_after and len(by_group.applied) == len(early)
    # ablating every error node and scaling by 1 are exact identities where they must be
    same = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("e_0_3", "scale", 1.0)], graph)
    assert same.top_after == same.top_before and same.downstream == []
    gone = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("e_0_3")], graph)
    assert gone.downstream and gone.top_after != gone.top_before


def test_bad_interventions(tiny_llama):
    tcs = random_transcoders(tiny_llama)
    graph = _graph(tiny_llama, tcs)
    cases = [
        (NodeIntervention("f_0_999_1"), UnknownGraphNodeError, "is not in this attribution graph"),
        (NodeIntervention("l_3"), UnknownGraphNodeError, "is not in this attribution graph"),
        (NodeIntervention("e_0_2", "add", 1.0), InvalidConfigError, "ablated or scaled"),
    ]
    for iv, err, msg in cases:
        with pytest.raises(err, match=msg):
            intervene(tiny_llama, tcs, PROMPT, [iv], graph)
    with pytest.raises(UnknownGraphNodeError, match="only feature and error"):
        intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("t_0")])
    with pytest.raises(IndexOutOfRangeError, match="position"):
        intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("f_0_99_1")])
    with pytest.raises(IndexOutOfRangeError, match="feature"):
        intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("f_0_1_99")])
    # a LayerNorm model (GPT-2) overflows to NaN under an absurd activation: a named error, not NaN out
    gpt2 = tiny("gpt2")
    n = int(gpt2.to_tokens(PROMPT).shape[1])
    with pytest.raises(InvalidConfigError, match="inf/NaN"):
        intervene(gpt2, random_transcoders(gpt2), PROMPT, [NodeIntervention(f"f_0_{n - 1}_0", "set", 3e38)])
    with pytest.raises(InvalidConfigError, match="mode"):
        NodeIntervention("f_0_1_1", "explode")
    with pytest.raises(InvalidConfigError, match="finite"):
        NodeIntervention("f_0_1_1", "add", float("nan"))


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_ablation_matches_the_graphs_logit_edges(kind):
    """Every logit edge of a last-layer feature at the last position in the attribution graph predicts what
    ablating the feature does to that logit (minus the mean logit, circuit-tracer's logit direction), with
    attention patterns and norm scales frozen as the graph's edges define them. (Unfrozen, the final norm's
    scale moves with the residual: a first-order term the graph leaves out by definition.)"""
    model = tiny(kind)
    tcs = random_transcoders(model)
    graph = attribute(ReplacementModel(model, tcs), PROMPT, AttributionConfig(max_feature_nodes=None))
    last = model.cfg.n_layers - 1
    edges = [
        (s, t, w)
        for (t, s), w in graph.edge_dict().items()
        if t[0] == "logit" and s[0] == "feature" and s[1] == last and s[2] == graph.n_pos - 1
    ]
    assert len(edges) >= 5
    for (_, l, p, f), (_, tok), w in edges[:5]:
        node = f"f_{l}_{p}_{f}"
        frozen = intervene(model, tcs, graph.tokens, [NodeIntervention(node)], freeze=True)
        delta = frozen.logits_after - frozen.logits_before
        assert float(delta[tok] - delta.mean()) == pytest.approx(-w, rel=1e-3, abs=1e-5)
