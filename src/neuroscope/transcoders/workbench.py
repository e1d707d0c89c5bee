"""What the workbench's attribution-graph routes call: the served model's transcoders, the graphs built for
recent prompts (kept unpruned, so the pruning sliders re-prune without rebuilding), supernodes, QK attribution
and interventions. Every number comes from :mod:`neuroscope.transcoders`; this holds state and applies the
server's limits."""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neuroscope.errors import AttributionGraphNotFoundError, NoTranscodersError, PromptTooLongError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.transcoders.model import TranscoderSet

MAX_GRAPHS = 8  # built graphs kept per server (LRU); each holds its unpruned edges


@dataclass
class HeldGraph:
    prompt: str
    graph: Any  # the unpruned graph object of neuroscope.transcoders.attribution
    config: dict[str, Any]


class AttributionService:
    def __init__(
        self, model: HookedModel, transcoders: str | os.PathLike | None = None, max_tokens: int = 128
    ):
        self.model = model
        self.max_tokens = max_tokens
        self.path = str(transcoders) if transcoders else None
        self.transcoders: TranscoderSet | None = None
        if transcoders:
            from neuroscope.transcoders.io import load_transcoders

            self.transcoders = load_transcoders(transcoders, model)
        self._graphs: OrderedDict[str, HeldGraph] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def attach(self, transcoders: TranscoderSet, path: str | None = None) -> None:
        """Use these transcoders (tests, and a later ``--transcoders`` reload); forgets every held graph."""
        with self._lock:
            self.transcoders, self.path = transcoders, path
            self._graphs.clear()

    def _tcs(self) -> TranscoderSet:
        if self.transcoders is None:
            raise NoTranscodersError(
                "No transcoders are attached: start the workbench with `neuroscope ui --transcoders DIR` "
                "(or NEUROSCOPE_TRANSCODERS=DIR); train them with `neuroscope train-transcoders`."
            )
        return self.transcoders

    def _check_prompt(self, prompt: str) -> None:
        n = int(self.model.to_tokens(prompt).shape[-1])
        if n > self.max_tokens:
            raise PromptTooLongError(n, self.max_tokens)

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

    def build(self, prompt: str, node_threshold: float, edge_threshold: float, **cfg: Any) -> dict[str, Any]:
        from neuroscope.transcoders import graphing

        tcs = self._tcs()
        self._check_prompt(prompt)
        graph = graphing.build(self.model, tcs, prompt, **cfg)
        gid = self._keep(HeldGraph(prompt, graph, dict(cfg)))
        return self._pruned(gid, graph, node_threshold, edge_threshold)

    def prune(self, graph_id: str, node_threshold: float, edge_threshold: float) -> dict[str, Any]:
        return self._pruned(graph_id, self.held(graph_id).graph, node_threshold, edge_threshold)

    def _pruned(self, gid: str, graph: Any, node_threshold: float, edge_threshold: float) -> dict[str, Any]:
        from neuroscope.transcoders import graphing

        doc = graphing.pruned_document(graph, node_threshold, edge_threshold)
        return {"graph_id": gid, "graph": doc}

    def document(self, graph_id: str) -> dict[str, Any]:
        """The held graph's full (unpruned) document: what supernodes and interventions check ids against."""
        from neuroscope.transcoders import graphing

        return graphing.full_document(self.held(graph_id).graph)

    # --- supernodes --------------------------------------------------------------------------------------
    def supernodes(self, graph_id: str, document: dict[str, Any] | None = None, **cfg: Any) -> dict[str, Any]:
        from neuroscope.transcoders.supernodes import SupernodeConfig, auto_supernodes, supernode_edges

        doc = document if document is not None else self.document(graph_id)
        spec = auto_supernodes(doc, self._tcs(), SupernodeConfig(**cfg))
        return {"graph_id": graph_id, "spec": spec.to_dict(), "edges": supernode_edges(doc, spec)}

    def edit_supernodes(self, graph_id: str, spec: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
        from neuroscope.transcoders.supernodes import (
            SupernodeSpec,
            apply_edit,
            supernode_edges,
            validate_spec,
        )

        doc = self.document(graph_id)
        new = validate_spec(apply_edit(validate_spec(SupernodeSpec.from_dict(spec), doc), edit), doc)
        return {"graph_id": graph_id, "spec": new.to_dict(), "edges": supernode_edges(doc, new)}

    # --- QK and interventions ----------------------------------------------------------------------------
    def qk(
        self, prompt: str, layer: int, head: int, query_pos: int, key_pos: int, top: int
    ) -> dict[str, Any]:
        from neuroscope.transcoders.qk import qk_attribution

        tcs = self._tcs()
        r = qk_attribution(self.model, tcs, prompt, layer, head, query_pos, key_pos, top, self.max_tokens)
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
        doc = self.document(graph_id)
        sn = validate_spec(SupernodeSpec.from_dict(spec), doc) if spec is not None else None
        ivs = [
            NodeIntervention(i["node"], i.get("mode", "ablate"), float(i.get("value", 0.0)))
            for i in interventions
        ]
        out = intervene(self.model, self._tcs(), held.prompt, ivs, doc, sn, top_k, freeze)
        return {"graph_id": graph_id, **out.to_dict()}
