"""What the workbench's graph views call: the served model's SAE suite, provenance graphs, task circuits
(kept per configuration, since discovery takes minutes on a CPU) and a feature's stored statistics.
Every number comes from :mod:`neuroscope.graphs`; this only holds state and applies the server's limits."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from neuroscope.errors import ResourceNotFoundError, TaskFileError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.suite import SAESuite

# tasks a client may name: the shipped data files that are contrastive pairs (never a path from a client)
SHIPPED_TASKS = ("ioi",)


class GraphService:
    def __init__(self, model: HookedModel, suite: str | os.PathLike | None = None, max_tokens: int = 128):
        from neuroscope.sae.suite import SAESuite

        self.model = model
        self.max_tokens = max_tokens
        self.suite: SAESuite | None = SAESuite.load(suite, model) if suite else None
        self._circuits: dict[tuple, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _suite(self) -> SAESuite:
        if self.suite is None:
            raise ResourceNotFoundError(
                "No SAE suite is attached: start the workbench with `neuroscope ui --sae-suite DIR` "
                "(build one with `neuroscope train-sae-suite`)."
            )
        return self.suite

    def suite_info(self) -> dict[str, Any]:
        s = self._suite()
        return {
            "path": str(s.path),
            "model": s.model_name,
            "hook": s.hook,
            "layers": s.layers,
            "d_sae": {str(l): s.sae(l).d_sae for l in s.layers},
            "has_features": {str(l): s.features(l) is not None for l in s.layers},
        }

    def provenance(self, prompt: str, layer: int, feature: int, position: int, **cfg: Any) -> dict[str, Any]:
        from neuroscope.graphs.provenance import ProvenanceConfig, provenance

        config = ProvenanceConfig(max_tokens=self.max_tokens, **cfg)
        return provenance(self.model, self._suite(), layer, feature, prompt, position, config).to_dict()

    def top_features(self, prompt: str, layer: int, position: int, k: int = 10) -> dict[str, Any]:
        """The most active features of the layer's SAE at one position: where a provenance starts."""
        import torch

        from neuroscope.errors import IndexOutOfRangeError, PromptTooLongError

        s = self._suite()
        sae = s.sae(layer, self.model)
        ids = self.model.to_tokens(prompt)[0]
        if ids.shape[0] > self.max_tokens:
            raise PromptTooLongError(int(ids.shape[0]), self.max_tokens)
        pos = position + ids.shape[0] if position < 0 else position
        if not 0 <= pos < ids.shape[0]:
            raise IndexOutOfRangeError("position", position, int(ids.shape[0]))
        hook = s.hook_name(layer)
        with torch.no_grad():
            _, cache = self.model.run_with_cache(ids[None], names=[hook])
            z = sae.encode(cache[hook][0, pos].float())
        vals, idx = z.topk(k)
        store = s.features(layer)
        rows = []
        for v, f in zip(vals.tolist(), idx.tolist(), strict=True):
            if v <= 0:
                break
            top = list(store.feature(f)["top_tokens"][:5]) if store is not None else []
            rows.append({"feature": f, "activation": v, "top_tokens": top})
        tokens = [self.model.tokenizer.decode([int(i)]) for i in ids]
        return {"layer": layer, "position": pos, "tokens": tokens, "features": rows}

    def feature(self, layer: int, feature: int) -> dict[str, Any]:
        s = self._suite()
        sae = s.sae(layer)
        from neuroscope.errors import IndexOutOfRangeError

        if not 0 <= feature < sae.d_sae:
            raise IndexOutOfRangeError("feature", feature, sae.d_sae)
        store = s.features(layer)
        if store is None:
            return {"layer": layer, "feature": feature, "has_store": False, "contexts": []}
        d = store.feature(feature)
        ctx = store.contexts(feature)[:8]
        return {
            "layer": layer,
            "feature": feature,
            "has_store": True,
            "density": d["density"],
            "mean_activation": d["mean_activation"],
            "max_activation": d["max_activation"],
            "top_tokens": list(d["top_tokens"]),
            "logit_top_tokens": list(d.get("logit_top_tokens") or []),
            "logit_bottom_tokens": list(d.get("logit_bottom_tokens") or []),
            "contexts": [
                {
                    "tokens": list(c["window_tokens"]),
                    "center": int(c["center"]),
                    "activation": float(c["activation"]),
                }
                for c in ctx
            ],
        }

    def circuit(
        self,
        task: str,
        edges: int,
        steps: int,
        sizes: tuple[int, ...] | None,
        random_draws: int,
        max_pairs: int | None,
    ) -> dict[str, Any]:
        from neuroscope.graphs.circuits import CircuitConfig, Task, find_circuit, load_task

        if task not in SHIPPED_TASKS:
            raise TaskFileError(f"unknown task {task!r}; this server offers {', '.join(SHIPPED_TASKS)}")
        key = (task, edges, steps, sizes, random_draws, max_pairs)
        with self._lock:
            if key in self._circuits:
                return self._circuits[key]
        t = load_task(self.model, task)
        if max_pairs is not None:
            t = Task(t.name, t.description, t.pairs[:max_pairs])
        cfg = CircuitConfig(edges=edges, steps=steps, sizes=sizes, random_draws=random_draws)
        doc = find_circuit(self.model, t, cfg).to_dict()
        with self._lock:
            self._circuits[key] = doc
        return doc
