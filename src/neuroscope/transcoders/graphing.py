"""STAND-IN for tc-graph's attribution graph (deleted when ``transcoders.attribution`` is merged): just enough
of a graph (nodes with the shared ids, direct edges to the logits) to develop the workbench routes against."""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def build(model: Any, tcs: Any, prompt: str, max_feature_nodes: int = 1000, **_: Any) -> dict[str, Any]:
    ids = model.to_tokens(prompt)[0]
    names = [f"blocks.{l}.ln2.hook_normalized" for l in tcs.layers]
    logits, cache = model.run_with_cache(ids[None], names=names)
    top = torch.softmax(logits[0, -1].float(), -1).topk(3).indices.tolist()
    w_u = model.W_U[:, top].float()
    nodes: list[dict[str, Any]] = [
        {"id": f"embed:{p}", "type": "embed", "pos": p, "label": model.tokenizer.decode([int(i)])}
        for p, i in enumerate(ids.tolist())
    ]
    nodes += [
        {"id": f"logit:{t}", "type": "logits", "token_id": t, "label": model.tokenizer.decode([t])}
        for t in top
    ]
    edges = []
    for l in tcs.layers:
        acts = tcs[l].encode(cache[f"blocks.{l}.ln2.hook_normalized"][0].float())
        for p, f in acts.nonzero().tolist()[:max_feature_nodes]:
            nid = f"feature:{l}:{f}:{p}"
            nodes.append(
                {
                    "id": nid,
                    "type": "feature",
                    "layer": l,
                    "feature": f,
                    "pos": p,
                    "activation": float(acts[p, f]),
                }
            )
            if p == ids.shape[0] - 1:
                w = acts[p, f] * tcs[l].W_dec[f].float() @ w_u
                edges += [
                    {"source": nid, "target": f"logit:{t}", "weight": float(x)}
                    for t, x in zip(top, w.tolist(), strict=True)
                ]
    return {"nodes": nodes, "edges": edges}


def full_document(graph: dict[str, Any]) -> dict[str, Any]:
    return graph


def pruned_document(graph: dict[str, Any], node_threshold: float, edge_threshold: float) -> dict[str, Any]:
    from neuroscope.errors import InvalidConfigError

    for name, v in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0 < v <= 1:
            raise InvalidConfigError(f"{name} must be in (0, 1]; got {v}.")
    return graph
