"""circuit-tracer's frontend graph JSON (``circuit_tracer/frontend/graph_models.py``, written by
``utils/create_graph_files.py``): export an :class:`AttributionGraph` so it opens in circuit-tracer's viewer,
and read graph JSON from elsewhere as untrusted data.

The export follows ``create_graph_files`` field for field: nodes kept by pruning (with circuit-tracer's ids,
``feature`` numbers and ``jsNodeId``s, ``influence`` = cumulative influence), links ``{source, target,
weight}`` kept by the edge mask, nodes without a kept link dropped except tokens and logits, and the
``graph-metadata.json`` index beside it. circuit-tracer's ids can collide (error ``0_{layer}_{pos}`` and a
layer-0 feature ``0_{feature}_{pos}``); the export keeps them as they are, for its viewer.

Reading (:func:`load_graph_json`): a file is size-capped before it is parsed, parsed as JSON only (never
evaluated or unpickled), and checked against the schema of its format, with node, link and string counts
bounded, before anything uses it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.errors import CorruptDataError
from neuroscope.graphs.schema import SCHEMA_ID, validate_graph

if TYPE_CHECKING:
    from neuroscope.transcoders.graph import AttributionGraph

MAX_BYTES = 256 * 2**20
MAX_NODES = 200_000
MAX_LINKS = 5_000_000
MAX_STR = 10_000
NODE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "node_id": str,
    "feature": int,
    "layer": str,
    "ctx_idx": int,
    "feature_type": str,
    "jsNodeId": str,
}
OPTIONAL_NODE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "token_prob": (int, float),
    "is_target_logit": bool,
    "run_idx": int,
    "reverse_ctx_idx": int,
    "clerp": str,
    "influence": (int, float, type(None)),
    "activation": (int, float, type(None)),
}


def _node(
    node_id: str, feature: int, layer: str, ctx: int, ftype: str, js: str, **extra: Any
) -> dict[str, Any]:
    base = {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": ctx,
        "feature_type": ftype,
        "token_prob": 0.0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js,
        "clerp": "",
        "influence": None,
        "activation": None,
    }
    return {**base, **extra}


def ct_node(graph: AttributionGraph, i: int, influence: float) -> dict[str, Any]:
    """Node ``i`` as circuit-tracer's ``Node.*_node`` classmethods build it."""
    key = graph.node_key(i)
    if key[0] == "feature":
        _, l, p, f = key
        act = float(graph.activation_values[graph.selected_features[i]])
        cantor = (l + f) * (l + f + 1) // 2 + f
        return _node(
            f"{l}_{f}_{p}", cantor, str(l), p, "cross layer transcoder", f"{l}_{f}-0",
            influence=influence, activation=act,
        )  # fmt: skip
    if key[0] == "error":
        _, l, p = key
        return _node(
            f"0_{l}_{p}", -1, str(l), p, "mlp reconstruction error", f"{l}_{p}-0", influence=influence
        )
    if key[0] == "token":
        p = key[1]
        v = int(graph.tokens[p])
        return _node(f"E_{v}_{p}", p, "E", p, "embedding", f"E_{v}-{p}", influence=influence)
    j = i - graph.logit_offset
    v, prob, pos, layer = (
        key[1],
        float(graph.logit_probabilities[j]),
        graph.n_pos - 1,
        str(graph.n_layers + 1),
    )
    return _node(
        f"{layer}_{v}_{pos}", v, layer, pos, "logit", f"L_{v}-{pos}",
        token_prob=prob, is_target_logit=j == 0, clerp=f'Output "{graph.logit_strs[j]}" (p={prob:.3f})',
    )  # fmt: skip


def to_circuit_tracer(
    graph: AttributionGraph,
    slug: str,
    scan: str | None = None,
    node_threshold: float | None = None,
    edge_threshold: float | None = None,
) -> dict[str, Any]:
    """The graph as circuit-tracer's frontend ``Model`` JSON (metadata, qParams, nodes, links)."""
    nt = graph.config.node_threshold if node_threshold is None else node_threshold
    pr = graph.prune(nt, edge_threshold)
    kept = pr.node_mask.nonzero().squeeze(1).tolist()
    nodes = {i: ct_node(graph, i, float(pr.cumulative_scores[i])) for i in kept}
    rows, cols = graph.adjacency.entry_rows(), graph.adjacency.cols.long()
    sel = pr.edge_mask.nonzero().squeeze(1)
    links, connected = [], set()
    for t, s, w in zip(
        rows[sel].tolist(), cols[sel].tolist(), graph.adjacency.vals[sel].tolist(), strict=True
    ):
        if s in nodes and t in nodes:
            links.append({"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": w})
            connected |= {nodes[s]["node_id"], nodes[t]["node_id"]}
    used = [
        n for n in nodes.values() if n["node_id"] in connected or n["feature_type"] in ("embedding", "logit")
    ]
    meta = {
        "slug": slug,
        "scan": scan or f"neuroscope-{graph.model_name}",
        "transcoder_list": [],
        "prompt_tokens": graph.token_strs,
        "prompt": "".join(graph.token_strs),
        "node_threshold": nt,
        "schema_version": 1,
    }
    qparams = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": meta, "qParams": qparams, "nodes": used, "links": links}


def write_circuit_tracer(doc: dict[str, Any], folder: str | Path) -> Path:
    """``{slug}.json`` and the ``graph-metadata.json`` index circuit-tracer's local server lists graphs from."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{doc['metadata']['slug']}.json"
    path.write_text(json.dumps(doc, indent=2))
    index = out / "graph-metadata.json"
    listing: dict[str, Any] = {"graphs": []}
    if index.exists():
        listing = load_json(index)
        if not isinstance(listing, dict) or not isinstance(listing.get("graphs"), list):
            raise CorruptDataError(f"{index} is not a circuit-tracer graph index ({{'graphs': [...]}}).")
    listing["graphs"] = [g for g in listing["graphs"] if g.get("slug") != doc["metadata"]["slug"]]
    listing["graphs"].append(doc["metadata"])
    index.write_text(json.dumps(listing, indent=2))
    return path


# --- reading untrusted graph JSON ---------------------------------------------------------------------------
def load_json(path: str | Path, max_bytes: int = MAX_BYTES) -> Any:
    p = Path(path)
    size = p.stat().st_size
    if size > max_bytes:
        raise CorruptDataError(f"{p} is {size} bytes; graph files are read up to {max_bytes} bytes.")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptDataError(f"{p} is not JSON: {e}") from None


def _check_str(value: Any, what: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_STR:
        raise CorruptDataError(
            f"not a circuit-tracer graph: {what} must be a string of at most {MAX_STR} chars"
        )


def validate_circuit_tracer(doc: Any) -> None:
    """Check a circuit-tracer frontend graph: its fields and types, bounded sizes, finite weights, links that
    join known nodes. Raises :class:`CorruptDataError` naming the first problem."""

    def bad(msg: str) -> CorruptDataError:
        return CorruptDataError(f"not a circuit-tracer graph: {msg}")

    if not isinstance(doc, dict):
        raise bad("expected a JSON object")
    for key, kind in (("metadata", dict), ("qParams", dict), ("nodes", list), ("links", list)):
        if not isinstance(doc.get(key), kind):
            raise bad(f"{key!r} missing or not a {kind.__name__}")
    meta = doc["metadata"]
    for key in ("slug", "scan", "prompt"):
        _check_str(meta.get(key), f"metadata.{key}")
    tokens = meta.get("prompt_tokens")
    if not isinstance(tokens, list) or len(tokens) > MAX_NODES:
        raise bad("metadata.prompt_tokens must be a list")
    for t in tokens:
        _check_str(t, "a prompt token")
    if len(doc["nodes"]) > MAX_NODES or len(doc["links"]) > MAX_LINKS:
        raise bad(f"more than {MAX_NODES} nodes or {MAX_LINKS} links")
    ids = set()
    for n in doc["nodes"]:
        if not isinstance(n, dict):
            raise bad("a node is not an object")
        for key, typ in NODE_FIELDS.items():
            if not isinstance(n.get(key), typ) or isinstance(n.get(key), bool) and typ is int:
                raise bad(f"node {str(n.get('node_id'))[:80]!r} lacks a valid {key!r}")
        for key, typ in OPTIONAL_NODE_FIELDS.items():
            if key in n and not isinstance(n[key], typ):
                raise bad(f"node {n['node_id'][:80]!r} has an invalid {key!r}")
        for key in ("node_id", "jsNodeId", "clerp", "layer", "feature_type"):
            if key in n:
                _check_str(n[key], f"node field {key}")
        ids.add(n["node_id"])
    for e in doc["links"]:
        if not isinstance(e, dict) or e.get("source") not in ids or e.get("target") not in ids:
            raise bad("a link joins unknown nodes")
        w = e.get("weight")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w):
            raise bad(f"link {e['source']!r} -> {e['target']!r} has no finite numeric weight")


def load_graph_json(path: str | Path) -> tuple[str, dict[str, Any]]:
    """Read a graph file from elsewhere: (``"neuroscope"`` | ``"circuit-tracer"``, the validated document)."""
    doc = load_json(path)
    if isinstance(doc, dict) and doc.get("schema") == SCHEMA_ID:
        if len(doc.get("nodes", [])) > MAX_NODES or len(doc.get("edges", [])) > MAX_LINKS:
            raise CorruptDataError(f"{path}: more than {MAX_NODES} nodes or {MAX_LINKS} edges")
        validate_graph(doc)
        return "neuroscope", doc
    validate_circuit_tracer(doc)
    return "circuit-tracer", doc
