"""What the workbench's attribution-graph routes call: the served model's transcoders, the graphs built for
recent prompts (kept unpruned, so the pruning sliders re-prune without rebuilding), supernodes, QK attribution
and interventions. Every number comes from :mod:`neuroscope.transcoders`; this holds state and applies the
server's limits."""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import AttributionGraphNotFoundError, GraphPromptTooLongError, NoTranscodersError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.transcoders.graph import AttributionGraph
    from neuroscope.transcoders.model import TranscoderSet
    from neuroscope.transcoders.replacement import ReplacementModel

MAX_GRAPHS = 8  # built graphs kept per server (LRU); each holds its unpruned edges


@dataclass
class HeldGraph:
    graph: AttributionGraph  # unpruned
    nodes: dict[str, Any]  # every feature, error, token and logit node of the unpruned graph (no edges)
    memo: dict[Any, Any] = field(default_factory=dict)  # interventions' recorded run and clean forwards


def node_document(graph: AttributionGraph) -> dict[str, Any]:
    """Every node of the unpruned graph (ids, kinds, layer/pos/feature, logit token ids), no edges: what
    supernode specs and interventions are checked against, whatever the view's pruning."""
    nodes: list[dict[str, Any]] = []
    for i, key in enumerate(graph.node_keys()):
        kind, *rest = key
        node: dict[str, Any] = {"id": graph.node_id(i), "type": "logits" if kind == "logit" else kind}
        if kind == "feature":
            node.update(layer=rest[0], pos=rest[1], feature=rest[2])
        elif kind == "error":
            node.update(layer=rest[0], pos=rest[1])
        elif kind == "token":
            node.update(pos=rest[0])
        else:
            node.update(token_id=rest[0])
        nodes.append(node)
    return {"nodes": nodes, "edges": []}


class AttributionService:
    def __init__(
        self, model: HookedModel, transcoders: str | os.PathLike | None = None, max_tokens: int = 128
    ):
        self.model = model
        self.max_tokens = max_tokens
        self.path = str(transcoders) if transcoders else None
        self.transcoders: TranscoderSet | None = None
        self._replacement: ReplacementModel | None = None
        self._graphs: OrderedDict[str, HeldGraph] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        if transcoders:
            from neuroscope.transcoders.io import load_transcoders

            self.attach(load_transcoders(transcoders, model), str(transcoders))

    def attach(self, transcoders: TranscoderSet, path: str | None = None) -> None:
        """Use these transcoders (tests, and a later ``--transcoders`` reload); forgets every held graph."""
        from neuroscope.transcoders.replacement import ReplacementModel

        replacement = ReplacementModel(self.model, transcoders)  # refuses another model's transcoders
        with self._lock:
            self.transcoders, self.path, self._replacement = transcoders, path, replacement
            self._graphs.clear()

    def _tcs(self) -> TranscoderSet:
        if self.transcoders is None:
            raise NoTranscodersError(
                "No transcoders are attached: start the workbench with `neuroscope ui --transcoders DIR` "
                "(or NEUROSCOPE_TRANSCODERS=DIR); train them with `neuroscope train-transcoders`."
            )
        return self.transcoders

    def _rm(self) -> ReplacementModel:
        self._tcs()
        assert self._replacement is not None
        return self._replacement

    def tokens(self, prompt: str) -> torch.Tensor:
        """The prompt's tokens as an attribution graph sees them (a special token first), within the limit."""
        from neuroscope.transcoders.attribution import prepare_tokens

        ids = prepare_tokens(self.model, prompt)
        if ids.numel() > self.max_tokens:
            raise GraphPromptTooLongError(int(ids.numel()), self.max_tokens)
        return ids

    def info(self) -> dict[str, Any]:
        tcs = self.transcoders
        if tcs is None:
            return {
                "available": False,
                "path": None,
                "model": self.model.cfg.name,
                "layers": [],
                "d_tc": {},
                "detail": "No transcoders attached: start the workbench with --transcoders DIR.",
            }
        return {
            "available": True,
            "path": self.path,
            "model": tcs.model_name,
            "layers": tcs.layers,
            "d_tc": {str(l): tcs[l].cfg.d_tc for l in tcs.layers},
            "detail": None,
        }

    # --- graphs ------------------------------------------------------------------------------------------
    def held(self, graph_id: str) -> HeldGraph:
        with self._lock:
            held = self._graphs.get(graph_id)
            if held is None:
                raise AttributionGraphNotFoundError(
                    f"No attribution graph {graph_id!r} on this server (it keeps the last {MAX_GRAPHS}): "
                    "build it again with POST /api/attribution-graph/build."
                )
            self._graphs.move_to_end(graph_id)
            return held

    def _keep(self, held: HeldGraph) -> str:
        with self._lock:
            gid = f"g{next(self._ids)}"
            self._graphs[gid] = held
            while len(self._graphs) > MAX_GRAPHS:
                self._graphs.popitem(last=False)
        return gid

    def build(
        self, prompt: str, node_threshold: float, edge_threshold: float, max_feature_nodes: int = 1000
    ) -> dict[str, Any]:
        from neuroscope.transcoders.attribution import AttributionConfig, attribute

        cfg = AttributionConfig(
            max_feature_nodes=max_feature_nodes,
            max_tokens=self.max_tokens,
            node_threshold=node_threshold,
            edge_threshold=edge_threshold,
        )
        graph = attribute(self._rm(), self.tokens(prompt), cfg)
        gid = self._keep(HeldGraph(graph, node_document(graph)))
        return {"graph_id": gid, "graph": graph.to_dict(node_threshold, edge_threshold)}

    def prune(self, graph_id: str, node_threshold: float, edge_threshold: float) -> dict[str, Any]:
        graph = self.held(graph_id).graph
        return {"graph_id": graph_id, "graph": graph.to_dict(node_threshold, edge_threshold)}

    # --- supernodes --------------------------------------------------------------------------------------
    def supernodes(
        self,
        graph_id: str,
        node_threshold: float,
        edge_threshold: float,
        threshold: float,
        role_weight: float,
    ) -> dict[str, Any]:
        """Supernodes of the graph as pruned for the view (its feature nodes and edges)."""
        from neuroscope.transcoders.supernodes import SupernodeConfig, auto_supernodes, supernode_edges

        cfg = SupernodeConfig(threshold=threshold, role_weight=role_weight)  # checked before any work
        doc = self.held(graph_id).graph.to_dict(node_threshold, edge_threshold)
        spec = auto_supernodes(doc, self._tcs(), cfg)
        return {"graph_id": graph_id, "spec": spec.to_dict(), "edges": supernode_edges(doc, spec)}

    def edit_supernodes(
        self,
        graph_id: str,
        spec: dict[str, Any],
        edit: dict[str, Any],
        node_threshold: float = 0.8,
        edge_threshold: float = 0.98,
    ) -> dict[str, Any]:
        """Apply one edit to a client's spec, checked against the whole graph (a spec outlives the sliders);
        the collapsed edges are those of the graph as pruned for the view."""
        from neuroscope.transcoders.supernodes import (
            SupernodeSpec,
            apply_edit,
            supernode_edges,
            validate_spec,
        )

        held = self.held(graph_id)
        new = validate_spec(
            apply_edit(validate_spec(SupernodeSpec.from_dict(spec), held.nodes), edit), held.nodes
        )
        doc = held.graph.to_dict(node_threshold, edge_threshold)
        return {"graph_id": graph_id, "spec": new.to_dict(), "edges": supernode_edges(doc, new)}

    # --- QK and interventions ----------------------------------------------------------------------------
    def qk(
        self, prompt: str, layer: int, head: int, query_pos: int, key_pos: int, top: int
    ) -> dict[str, Any]:
        from neuroscope.transcoders.qk import qk_attribution

        tcs = self._tcs()
        r = qk_attribution(self.model, tcs, self.tokens(prompt), layer, head, query_pos, key_pos, top)
        return r.to_dict()

    def intervene(
        self,
        graph_id: str,
        interventions: list[dict[str, Any]],
        spec: dict[str, Any] | None = None,
        top_k: int = 10,
        freeze: bool = False,
    ) -> dict[str, Any]:
        from neuroscope.transcoders.intervene import NodeIntervention, intervene
        from neuroscope.transcoders.supernodes import SupernodeSpec, validate_spec

        held = self.held(graph_id)
        doc = held.nodes
        sn = validate_spec(SupernodeSpec.from_dict(spec), doc) if spec is not None else None
        ivs = [
            NodeIntervention(i["node"], i.get("mode", "ablate"), float(i.get("value", 0.0)))
            for i in interventions
        ]
        tokens = held.graph.tokens
        out = intervene(self.model, self._tcs(), tokens, ivs, doc, sn, top_k, freeze, memo=held.memo)
        return {"graph_id": graph_id, **out.to_dict()}

    # --- feature detail ----------------------------------------------------------------------------------
    def feature(self, layer: int, feature: int, graph_id: str | None = None, k: int = 10) -> dict[str, Any]:
        """A transcoder feature's logit effects (its decoder row through the unembedding, as the Features
        view shows an SAE's), its stored statistics and top contexts when the transcoder folder has a feature
        store (``train-transcoders --features``) and, with ``graph_id``, its activation at each position of
        that graph's prompt."""
        from neuroscope.errors import IndexOutOfRangeError
        from neuroscope.lab.views import logit_effects

        tcs = self._tcs()
        if layer not in tcs.transcoders:
            raise IndexOutOfRangeError("transcoder layer", layer, self.model.cfg.n_layers)
        tc = tcs[layer]
        if not 0 <= feature < tc.cfg.d_tc:
            raise IndexOutOfRangeError("feature", feature, tc.cfg.d_tc)
        out: dict[str, Any] = {
            "layer": layer,
            "feature": feature,
            "d_tc": tc.cfg.d_tc,
            **logit_effects(self.model, tc, feature, k),  # type: ignore[arg-type]  # duck-typed: W_dec rows
            "tokens": None,
            "activations": None,
            **self._stored(layer, feature),
        }
        if graph_id is not None:
            graph = self.held(graph_id).graph
            acts = torch.zeros(graph.n_pos)
            hit = (graph.active_features[:, 0] == layer) & (graph.active_features[:, 2] == feature)
            acts[graph.active_features[hit, 1]] = graph.activation_values[hit].float()
            out.update(tokens=graph.token_strs, activations=acts.tolist())
        return out

    def _stored(self, layer: int, feature: int) -> dict[str, Any]:
        from neuroscope.transcoders.features import transcoder_features

        store = transcoder_features(self.path, layer) if self.path else None
        if store is None:
            return {"has_store": False, "contexts": []}
        d = store.feature(feature)
        return {
            "has_store": True,
            "density": float(d["density"]),
            "mean_activation": float(d["mean_activation"]),
            "max_activation": float(d["max_activation"]),
            "top_tokens": list(d["top_tokens"]),
            "contexts": [
                {
                    "tokens": list(c["window_tokens"]),
                    "center": int(c["center"]),
                    "activation": float(c["activation"]),
                }
                for c in store.contexts(feature)[:8]
            ],
        }
