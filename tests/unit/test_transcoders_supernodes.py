"""Automatic supernodes find planted groups; edits are pure, validated and round-trip through JSON."""

from __future__ import annotations

import json

import pytest
import torch

from neuroscope.errors import InvalidConfigError, SupernodeSpecError
from neuroscope.transcoders.model import Transcoder, TranscoderConfig, TranscoderSet
from neuroscope.transcoders.supernodes import (
    SupernodeConfig,
    SupernodeSpec,
    apply_edit,
    auto_supernodes,
    supernode_edges,
    validate_spec,
)


def planted() -> tuple[dict, TranscoderSet]:
    """Features 3 and 7 of layer 0 and feature 5 of layer 1: near-identical decoders and edges (one role);
    features 1 and 2: unrelated decoders and opposite roles."""
    tcs = {l: Transcoder(TranscoderConfig(64, 16, l, "topk", k=2), seed=l) for l in (0, 1)}
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        base = torch.randn(64, generator=g)
        for l, f in ((0, 3), (0, 7), (1, 5)):
            tcs[l].W_dec[f] = base + 0.05 * torch.randn(64, generator=g)
    feats = [(0, 1), (0, 2), (0, 3), (0, 7), (1, 5)]
    nodes = [{"id": f"embed:{p}", "type": "embed", "pos": p} for p in range(3)]
    nodes += [
        {"id": f"feature:{l}:{f}:2", "type": "feature", "layer": l, "feature": f, "pos": 2} for l, f in feats
    ]
    nodes += [{"id": "logit:a", "type": "logits"}, {"id": "logit:b", "type": "logits"}]
    edges = []
    for l, f, w in ((0, 3, 1.0), (0, 7, 1.05), (1, 5, 0.95)):
        edges += [
            {"source": "embed:0", "target": f"feature:{l}:{f}:2", "weight": w},
            {"source": "embed:1", "target": f"feature:{l}:{f}:2", "weight": 0.3 * w},
            {"source": f"feature:{l}:{f}:2", "target": "logit:a", "weight": 0.5 * w},
        ]
    edges += [
        {"source": "embed:1", "target": "feature:0:1:2", "weight": -1.0},
        {"source": "feature:0:1:2", "target": "logit:b", "weight": 0.7},
        {"source": "embed:2", "target": "feature:0:2:2", "weight": 0.8},
        {"source": "feature:0:2:2", "target": "logit:a", "weight": -0.6},
    ]
    return {"nodes": nodes, "edges": edges}, TranscoderSet("m", tcs)


def test_planted_group_is_found_and_deterministic():
    graph, tcs = planted()
    spec = auto_supernodes(graph, tcs)
    assert [g.members for g in spec.groups] == [("feature:0:3:2", "feature:0:7:2", "feature:1:5:2")]
    assert spec.groups[0].id == "sn0" and spec.groups[0].name == "L0-1 ×3"
    shuffled = {"nodes": graph["nodes"], "edges": graph["edges"][::-1]}
    assert auto_supernodes(shuffled, tcs) == spec
    # decoders alone (role_weight 0) still find it; a threshold of 1 groups nothing
    assert (
        auto_supernodes(graph, tcs, SupernodeConfig(role_weight=0.0)).groups[0].members
        == spec.groups[0].members
    )
    assert auto_supernodes(graph, tcs, SupernodeConfig(threshold=1.0)).groups == ()
    collapsed = supernode_edges(graph, spec)
    to_a = [e for e in collapsed if e["source"] == "sn0" and e["target"] == "logit:a"]
    assert to_a[0]["weight"] == pytest.approx(0.5 * (1.0 + 1.05 + 0.95))
    with pytest.raises(InvalidConfigError, match="threshold"):
        SupernodeConfig(threshold=0.0)


def test_edits_are_pure_and_validated():
    graph, tcs = planted()
    spec = auto_supernodes(graph, tcs)
    a, b, c = spec.groups[0].members
    split = apply_edit(spec, {"op": "split", "id": "sn0", "members": [c], "name": "late"})
    assert [(g.id, g.name, g.members) for g in split.groups] == [
        ("sn0", "L0-1 ×3", (a, b)),
        ("sn1", "late", (c,)),
    ]
    assert spec.groups[0].members == (a, b, c)  # the input spec is untouched
    moved = apply_edit(split, {"op": "move", "node": "feature:0:1:2", "to": "sn1"})
    assert moved.group("sn1").members == (c, "feature:0:1:2")
    merged = apply_edit(moved, {"op": "merge", "ids": ["sn1", "sn0"], "name": "all"})
    assert [(g.id, g.name, set(g.members)) for g in merged.groups] == [
        ("sn1", "all", {a, b, c, "feature:0:1:2"})
    ]
    renamed = apply_edit(merged, {"op": "rename", "id": "sn1", "name": "says A"})
    assert renamed.groups[0].name == "says A"
    ungrouped = apply_edit(split, {"op": "move", "node": c, "to": None})
    assert [g.id for g in ungrouped.groups] == ["sn0"]  # the emptied supernode is dropped
    # JSON round trip, then validation against the graph
    back = SupernodeSpec.from_dict(json.loads(json.dumps(renamed.to_dict())))
    assert back == renamed and validate_spec(back, graph) == renamed
    bad = [
        ({"op": "merge", "ids": ["sn0"]}, "two or more"),
        ({"op": "split", "id": "sn0", "members": [a, b, c]}, "not all"),
        ({"op": "rename", "id": "nope", "name": "x"}, "Unknown supernode 'nope'"),
        ({"op": "explode"}, "Unknown edit 'explode'"),
    ]
    for edit, msg in bad:
        with pytest.raises(SupernodeSpecError, match=msg):
            apply_edit(spec, edit)
    with pytest.raises(SupernodeSpecError, match="two supernodes"):
        SupernodeSpec.from_dict(
            {"groups": [{"id": "x", "name": "x", "members": [a]}, {"id": "y", "name": "y", "members": [a]}]}
        )
    with pytest.raises(SupernodeSpecError, match="not feature nodes"):
        validate_spec(
            SupernodeSpec.from_dict({"groups": [{"id": "x", "name": "x", "members": ["embed:0"]}]}), graph
        )
    with pytest.raises(SupernodeSpecError, match="groups"):
        SupernodeSpec.from_dict([1, 2])
