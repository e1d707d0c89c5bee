"""Interventions from the graph, checked against the linear effect they must have and against each other."""

from __future__ import annotations

import pytest
import torch
from tc_testutil import PROMPT, random_transcoders

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, UnknownGraphNodeError
from neuroscope.graphs.linear import frozen_norm
from neuroscope.transcoders.intervene import NodeIntervention, intervene
from neuroscope.transcoders.replacement import ReplacementModel
from neuroscope.transcoders.supernodes import SupernodeSpec

# gemma2 soft-caps its final logits (not linear in the residual); every other family is covered
LINEAR_HEADS = ("llama", "qwen3", "gemma", "gemma3_text", "phi3", "gpt_neox", "gpt2")


@pytest.mark.parametrize("kind", LINEAR_HEADS)
def test_ablation_moves_logits_by_the_direct_effect(kind):
    """With attention, norms and errors frozen, a last-layer feature at the last position reaches the logits
    only directly: ablating it moves every logit by −activation · W_dec[f] through the frozen final norm."""
    from conftest import tiny

    model = tiny(kind)
    tcs = random_transcoders(model)
    last = model.cfg.n_layers - 1
    rm = ReplacementModel(model, tcs)
    run = rm.record(model.to_tokens(PROMPT)[0])
    p = run.n_pos - 1
    acts = rm.clean_activations(run, last)[p]
    f = int(acts.argmax())
    assert acts[f] > 0
    node = f"feature:{last}:{f}:{p}"
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


def _graph(model, tcs) -> dict:
    """A graph document with every active feature and error node (what a built graph names)."""
    rm = ReplacementModel(model, tcs)
    run = rm.record(model.to_tokens(PROMPT)[0])
    nodes = []
    for l in tcs.layers:
        for p, f in rm.clean_activations(run, l).nonzero().tolist():
            nodes.append(
                {"id": f"feature:{l}:{f}:{p}", "type": "feature", "layer": l, "feature": f, "pos": p}
            )
        nodes += [{"id": f"error:{l}:{p}", "type": "error", "layer": l, "pos": p} for p in range(run.n_pos)]
    top = int(run.logits.argmax())
    nodes.append({"id": f"logit:{top}", "type": "logits", "token_id": top})
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
    # a supernode is its members, with the same mode and value
    spec = SupernodeSpec.from_dict(
        {"groups": [{"id": "sn0", "name": "x", "members": [n["id"] for n in early]}]}
    )
    by_group = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("sn0")], graph, spec)
    by_nodes = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention(n["id"]) for n in early], graph)
    assert by_group.top_after == by_nodes.top_after and len(by_group.applied) == len(early)
    # ablating every error node and scaling by 1 are exact identities where they must be
    same = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("error:0:3", "scale", 1.0)], graph)
    assert same.top_after == same.top_before and same.downstream == []
    gone = intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("error:0:3")], graph)
    assert gone.downstream and gone.top_after != gone.top_before


def test_bad_interventions(tiny_llama):
    tcs = random_transcoders(tiny_llama)
    graph = _graph(tiny_llama, tcs)
    cases = [
        (NodeIntervention("feature:0:1:999"), UnknownGraphNodeError, "is not in this attribution graph"),
        (NodeIntervention("logit:3"), UnknownGraphNodeError, "is not in this attribution graph"),
        (NodeIntervention("error:0:2", "add", 1.0), InvalidConfigError, "ablated or scaled"),
    ]
    for iv, err, msg in cases:
        with pytest.raises(err, match=msg):
            intervene(tiny_llama, tcs, PROMPT, [iv], graph)
    with pytest.raises(UnknownGraphNodeError, match="only feature and error"):
        intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("embed:0")])
    with pytest.raises(IndexOutOfRangeError, match="position"):
        intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("feature:0:1:99")])
    with pytest.raises(IndexOutOfRangeError, match="feature"):
        intervene(tiny_llama, tcs, PROMPT, [NodeIntervention("feature:0:99:1")])
    with pytest.raises(InvalidConfigError, match="mode"):
        NodeIntervention("feature:0:1:1", "explode")
    with pytest.raises(InvalidConfigError, match="finite"):
        NodeIntervention("feature:0:1:1", "add", float("nan"))
