"""Automatic supernodes: an attribution graph's feature nodes grouped by role and by meaning, then edited.

Two similarities between feature nodes, each a cosine in ``[-1, 1]``:

- **role**: of their edge profiles in the graph, the vector of incoming edge weights (indexed by source node)
  concatenated with the vector of outgoing ones (indexed by target node). Two features fed by the same nodes and
  feeding the same nodes play the same part in the circuit.
- **decoder**: of their transcoders' decoder rows ``W_dec[f]``, what the features write to the residual stream
  (the same feature at two positions has decoder similarity 1).

The combined similarity is ``role_weight · role + (1 - role_weight) · decoder``. Grouping is average-linkage
agglomerative clustering on the distance ``1 - similarity``, cut at ``1 - threshold``: a group's members are on
average at least ``threshold`` similar to each other. Nodes are ordered as in the graph before clustering and
groups are numbered by their first member, so the same graph always gives the same groups. Only groups of two or
more become supernodes; at most ``max_nodes`` feature nodes (the most influential, by ``|influence|`` then
``|activation|``) take part, which bounds the ``O(n²)`` distance matrix.

A :class:`SupernodeSpec` is plain data that round-trips to JSON. Edits (merge, split, rename, move) are pure
functions returning a new spec; :func:`validate_spec` checks one that came from a user against the graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from neuroscope.errors import InvalidConfigError, SupernodeSpecError

if TYPE_CHECKING:
    from neuroscope.transcoders.model import TranscoderSet

MAX_GROUPS = 1000
MAX_MEMBERS = 10_000
NAME_RE = re.compile(r"^[^\x00-\x1f]{1,120}$")
ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,80}$")


@dataclass(frozen=True)
class SupernodeConfig:
    threshold: float = 0.6  # minimum average similarity inside a group, in (0, 1]
    role_weight: float = 0.5  # share of the role similarity (the rest: decoder similarity), in [0, 1]
    max_nodes: int = 2000

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise InvalidConfigError(f"threshold must be in (0, 1]; got {self.threshold}.")
        if not 0 <= self.role_weight <= 1:
            raise InvalidConfigError(f"role_weight must be in [0, 1]; got {self.role_weight}.")
        if not 2 <= self.max_nodes <= 20_000:
            raise InvalidConfigError(f"max_nodes must be in 2..20000; got {self.max_nodes}.")


@dataclass(frozen=True)
class Supernode:
    id: str
    name: str
    members: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "members": list(self.members)}


@dataclass(frozen=True)
class SupernodeSpec:
    groups: tuple[Supernode, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [g.to_dict() for g in self.groups]}

    @classmethod
    def from_dict(cls, data: Any) -> SupernodeSpec:
        """Parse (and check the shape of) a spec from JSON; :func:`validate_spec` checks it against a graph."""
        if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
            raise SupernodeSpecError('A supernode spec is an object {"groups": [...]}.')
        if len(data["groups"]) > MAX_GROUPS:
            raise SupernodeSpecError(f"At most {MAX_GROUPS} supernodes; got {len(data['groups'])}.")
        groups = []
        for i, g in enumerate(data["groups"]):
            if not isinstance(g, dict) or set(g) - {"id", "name", "members"}:
                raise SupernodeSpecError(f"group {i}: an object with id, name and members only.")
            gid, name, members = g.get("id"), g.get("name"), g.get("members")
            if not isinstance(gid, str) or not ID_RE.match(gid):
                raise SupernodeSpecError(f"group {i}: id must match {ID_RE.pattern}; got {gid!r}.")
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise SupernodeSpecError(f"group {gid}: name must be 1..120 printable characters.")
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise SupernodeSpecError(f"group {gid}: members must be a list of node ids.")
            groups.append(Supernode(gid, name, tuple(members)))
        spec = cls(tuple(groups))
        _check_structure(spec)
        return spec

    def group(self, gid: str) -> Supernode:
        for g in self.groups:
            if g.id == gid:
                return g
        raise SupernodeSpecError(
            f"Unknown supernode {gid!r}; this spec has {', '.join(g.id for g in self.groups) or 'none'}."
        )

    def group_of(self, node: str) -> Supernode | None:
        return next((g for g in self.groups if node in g.members), None)


def _check_structure(spec: SupernodeSpec) -> None:
    ids = [g.id for g in spec.groups]
    if len(set(ids)) != len(ids):
        raise SupernodeSpecError("Supernode ids must be unique.")
    seen: dict[str, str] = {}
    total = 0
    for g in spec.groups:
        if not g.members:
            raise SupernodeSpecError(f"Supernode {g.id!r} has no members.")
        total += len(g.members)
        for m in g.members:
            if m in seen:
                raise SupernodeSpecError(f"Node {m!r} is in two supernodes ({seen[m]!r} and {g.id!r}).")
            seen[m] = g.id
    if total > MAX_MEMBERS:
        raise SupernodeSpecError(f"At most {MAX_MEMBERS} nodes in supernodes; got {total}.")


def validate_spec(spec: SupernodeSpec, graph: dict[str, Any]) -> SupernodeSpec:
    """Check a spec against a graph: every member is one of its feature nodes."""
    _check_structure(spec)
    features = {n["id"] for n in graph["nodes"] if n.get("type") == "feature"}
    for g in spec.groups:
        unknown = [m for m in g.members if m not in features]
        if unknown:
            raise SupernodeSpecError(
                f"Supernode {g.id!r} names {len(unknown)} node(s) that are not feature nodes of this graph "
                f"(first: {unknown[0]!r})."
            )
    return spec


# --- automatic grouping -----------------------------------------------------------------------------------
def _feature_nodes(graph: dict[str, Any], cap: int) -> list[dict[str, Any]]:
    nodes = [n for n in graph["nodes"] if n.get("type") == "feature"]
    if len(nodes) <= cap:
        return nodes
    order = sorted(
        range(len(nodes)),
        key=lambda i: (
            -abs(nodes[i].get("influence") or nodes[i].get("attribution") or 0.0),
            -abs(nodes[i].get("activation") or 0.0),
            i,
        ),
    )
    keep = sorted(order[:cap])
    return [nodes[i] for i in keep]


def _cosine(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return unit @ unit.T


def similarity(
    graph: dict[str, Any], transcoders: TranscoderSet, nodes: list[dict[str, Any]], role_weight: float
) -> np.ndarray:
    """The combined similarity ``[n, n]`` of the given feature nodes (see the module docstring)."""
    index = {n["id"]: i for i, n in enumerate(graph["nodes"])}
    rows = {n["id"]: r for r, n in enumerate(nodes)}
    width = len(index)
    profile = np.zeros((len(nodes), 2 * width), dtype=np.float64)
    for e in graph["edges"]:
        w = float(e["weight"])
        if e["target"] in rows and e["source"] in index:
            profile[rows[e["target"]], index[e["source"]]] += w
        if e["source"] in rows and e["target"] in index:
            profile[rows[e["source"]], width + index[e["target"]]] += w
    dec = np.stack(
        [transcoders[int(n["layer"])].W_dec[int(n["feature"])].detach().double().cpu().numpy() for n in nodes]
    )
    return role_weight * _cosine(profile) + (1 - role_weight) * _cosine(dec)


def auto_supernodes(
    graph: dict[str, Any], transcoders: TranscoderSet, config: SupernodeConfig | None = None
) -> SupernodeSpec:
    """Group the graph's feature nodes (documented, deterministic clustering: see the module docstring)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    cfg = config or SupernodeConfig()
    nodes = _feature_nodes(graph, cfg.max_nodes)
    for n in nodes:
        if int(n["layer"]) not in transcoders.transcoders:
            raise SupernodeSpecError(f"Node {n['id']!r} is at layer {n['layer']}, which has no transcoder.")
    if len(nodes) < 2:
        return SupernodeSpec()
    sim = similarity(graph, transcoders, nodes, cfg.role_weight)
    dist = np.clip(1.0 - sim, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    labels = fcluster(
        linkage(squareform((dist + dist.T) / 2, checks=False), "average"),
        t=1.0 - cfg.threshold + 1e-12,
        criterion="distance",
    )
    members: dict[int, list[str]] = {}
    for n, lab in zip(nodes, labels.tolist(), strict=True):
        members.setdefault(lab, []).append(n["id"])
    by_id = {n["id"]: n for n in nodes}
    groups: list[Supernode] = []
    for ms in sorted((m for m in members.values() if len(m) > 1), key=lambda m: nodes.index(by_id[m[0]])):
        groups.append(Supernode(f"sn{len(groups)}", _auto_name(ms, by_id), tuple(ms)))
    return SupernodeSpec(tuple(groups))


def _auto_name(members: list[str], by_id: dict[str, dict[str, Any]]) -> str:
    layers = sorted({int(by_id[m]["layer"]) for m in members})
    span = f"L{layers[0]}" if len(layers) == 1 else f"L{layers[0]}-{layers[-1]}"
    return f"{span} ×{len(members)}"


# --- edits: pure functions over a spec --------------------------------------------------------------------
def _next_id(spec: SupernodeSpec) -> str:
    used = {g.id for g in spec.groups}
    i = len(spec.groups)
    while f"sn{i}" in used:
        i += 1
    return f"sn{i}"


def merge(spec: SupernodeSpec, ids: list[str], name: str | None = None) -> SupernodeSpec:
    """One supernode from several (in place of the first)."""
    if len(ids) < 2 or len(set(ids)) != len(ids):
        raise SupernodeSpecError("merge needs two or more distinct supernode ids.")
    parts = [spec.group(i) for i in ids]
    merged = Supernode(ids[0], name or parts[0].name, tuple(m for g in parts for m in g.members))
    out = tuple(merged if g.id == ids[0] else g for g in spec.groups if g.id not in ids[1:])
    return _checked(SupernodeSpec(out))


def split(spec: SupernodeSpec, gid: str, members: list[str], name: str | None = None) -> SupernodeSpec:
    """Move ``members`` of supernode ``gid`` into a new supernode (both keep at least one node)."""
    g = spec.group(gid)
    moving = [m for m in g.members if m in set(members)]
    if set(members) - set(g.members):
        raise SupernodeSpecError(f"split: {sorted(set(members) - set(g.members))[0]!r} is not in {gid!r}.")
    if not moving or len(moving) == len(g.members):
        raise SupernodeSpecError("split: move some, but not all, of the supernode's members.")
    kept = replace(g, members=tuple(m for m in g.members if m not in set(moving)))
    new = Supernode(_next_id(spec), name or f"{g.name} (split)", tuple(moving))
    out = []
    for x in spec.groups:
        out += [kept, new] if x.id == gid else [x]
    return _checked(SupernodeSpec(tuple(out)))


def rename(spec: SupernodeSpec, gid: str, name: str) -> SupernodeSpec:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SupernodeSpecError("A supernode name is 1..120 printable characters.")
    g = spec.group(gid)
    return SupernodeSpec(tuple(replace(x, name=name) if x.id == g.id else x for x in spec.groups))


def move(spec: SupernodeSpec, node: str, to: str | None) -> SupernodeSpec:
    """Move one node into supernode ``to`` (``None``: out of every supernode; a group left empty is dropped)."""
    if to is not None:
        spec.group(to)
    out = []
    for g in spec.groups:
        ms = tuple(m for m in g.members if m != node)
        if g.id == to:
            ms += (node,)
        if ms:
            out.append(replace(g, members=ms))
    return _checked(SupernodeSpec(tuple(out)))


def _checked(spec: SupernodeSpec) -> SupernodeSpec:
    _check_structure(spec)
    return spec


EDITS = ("merge", "split", "rename", "move")


def apply_edit(spec: SupernodeSpec, edit: dict[str, Any]) -> SupernodeSpec:
    """One edit from JSON: ``{"op": "merge", "ids": [...], "name"?}``, ``{"op": "split", "id", "members",
    "name"?}``, ``{"op": "rename", "id", "name"}`` or ``{"op": "move", "node", "to"}`` (``to`` null: ungroup)."""
    op = edit.get("op")
    try:
        if op == "merge":
            return merge(spec, list(edit["ids"]), edit.get("name"))
        if op == "split":
            return split(spec, edit["id"], list(edit["members"]), edit.get("name"))
        if op == "rename":
            return rename(spec, edit["id"], edit["name"])
        if op == "move":
            return move(spec, edit["node"], edit.get("to"))
    except KeyError as e:
        raise SupernodeSpecError(f"{op}: missing field {e.args[0]!r}.") from None
    raise SupernodeSpecError(f"Unknown edit {op!r}; choose one of {', '.join(EDITS)}.")


def supernode_edges(graph: dict[str, Any], spec: SupernodeSpec) -> list[dict[str, Any]]:
    """The graph's edges with each supernode's members collapsed into one node (weights summed; edges inside
    a supernode dropped), for drawing the grouped graph."""
    where = {m: g.id for g in spec.groups for m in g.members}
    acc: dict[tuple[str, str], float] = {}
    for e in graph["edges"]:
        s, t = where.get(e["source"], e["source"]), where.get(e["target"], e["target"])
        if s != t:
            acc[(s, t)] = acc.get((s, t), 0.0) + float(e["weight"])
    return [{"source": s, "target": t, "weight": w} for (s, t), w in acc.items()]
