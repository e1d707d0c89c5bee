"""The graph JSON both provenance and circuits write, and the workbench's graph view reads.

One document: ``schema`` (``neuroscope-graph/1``), ``kind`` (``provenance`` | ``circuit``), ``model``,
``title``, ``tokens`` (the prompt's tokens, or null), ``bands`` (the horizontal layer bands, bottom to top),
``nodes``, ``edges`` and a kind-specific ``meta``. Bands are positions in the residual stream: band 0 is the
token embeddings, band ``j`` the residual after block ``j-1``; a block's heads sit at ``b + 0.4`` and its
MLP at ``b + 0.7``. The full JSON Schema is ``graph.schema.json`` beside this module; field meanings are in
docs/graphs/SCHEMA.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from neuroscope.errors import CorruptDataError

SCHEMA_ID = "neuroscope-graph/1"
NODE_TYPES = ("feature", "error", "head", "mlp", "token", "embed", "logits")
KINDS = ("provenance", "circuit", "attribution")


@dataclass
class Node:
    id: str
    type: str
    band: float
    label: str
    layer: int | None = None  # model block (heads, MLPs) or the SAE's suite layer (features, errors)
    pos: int | None = None  # token position (query position for heads)
    attribution: float = 0.0  # what sizes the node: influence on the target (provenance), |score| (circuit)
    value: float | None = None  # the node's input (pre-activation; contribution for heads/MLPs)
    activation: float | None = None
    feature: int | None = None
    head: int | None = None
    source_pos: int | None = None
    top_tokens: list[str] = field(default_factory=list)
    error_share: float | None = None
    completeness: float | None = None
    kept_share: float | None = None
    bias: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**{k: v for k, v in d.items() if v is not None}, **extra}


@dataclass
class Edge:
    source: str
    target: str
    weight: float
    path: str  # how the source reaches the target: skip, attention, mlp, mlp-input, value, identity, circuit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bands_for(n_streams: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"band": 0.0, "label": "embeddings"}]
    for j in range(1, n_streams):
        out.append({"band": j - 0.6, "label": f"attn {j - 1}"})
        out.append({"band": j - 0.3, "label": f"mlp {j - 1}"})
        out.append({"band": float(j), "label": f"resid {j - 1}"})
    return out


def document(
    kind: str,
    model: str,
    title: str,
    nodes: list[Node],
    edges: list[Edge],
    tokens: list[str] | None,
    bands: list[dict[str, Any]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID,
        "kind": kind,
        "model": model,
        "title": title,
        "tokens": tokens,
        "bands": bands,
        "nodes": [n.to_dict() for n in nodes],
        "edges": [e.to_dict() for e in edges],
        "meta": meta,
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a graph document."""
    text = resources.files("neuroscope.graphs").joinpath("graph.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def validate_graph(doc: Any) -> None:
    """Check the structure a reader relies on (a subset of the JSON Schema, without a dependency):
    required fields and types, known node types, and edges that join existing nodes."""

    def bad(msg: str) -> CorruptDataError:
        return CorruptDataError(f"not a {SCHEMA_ID} graph: {msg}")

    if not isinstance(doc, dict):
        raise bad("expected a JSON object")
    for key in ("schema", "kind", "model", "nodes", "edges", "bands", "meta"):
        if key not in doc:
            raise bad(f"missing {key!r}")
    if doc["schema"] != SCHEMA_ID:
        raise bad(f"schema is {doc['schema']!r}")
    if doc["kind"] not in KINDS:
        raise bad(f"kind {doc['kind']!r} is not one of {KINDS}")
    ids = set()
    for n in doc["nodes"]:
        for key, typ in (("id", str), ("type", str), ("band", (int, float)), ("label", str)):
            if not isinstance(n.get(key), typ):
                raise bad(f"node {n.get('id')!r} lacks a valid {key!r}")
        if n["type"] not in NODE_TYPES:
            raise bad(f"node {n['id']!r} has unknown type {n['type']!r}")
        if n["id"] in ids:
            raise bad(f"duplicate node id {n['id']!r}")
        ids.add(n["id"])
    for e in doc["edges"]:
        if e.get("source") not in ids or e.get("target") not in ids:
            raise bad(f"edge {e.get('source')!r} -> {e.get('target')!r} joins unknown nodes")
        if not isinstance(e.get("weight"), (int, float)):
            raise bad(f"edge {e['source']!r} -> {e['target']!r} has no numeric weight")
