"""The attribution-graph workbench on smollm2-135m with trained transcoders: what a click costs.

On a 64-token prompt (the graph built at the live view's limit of 1,000 feature nodes, as ``POST
/api/attribution-graph/build`` does), times the library calls behind the routes: QK attribution of one head,
automatic supernodes at the default pruning, and node interventions (the first one records the run and the
clean forward; later ones, as the live view sends them, reuse both). Writes the ``workbench`` section of
``benchmarks/results/transcoders.json`` (other sections are left as they are).

``python -m benchmarks.transcoders_workbench [--transcoders /work/tcs/smollm2-135m] [--interventions 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from typing import Any

from benchmarks.common import RESULTS, machine_info
from benchmarks.latency_bench import TEXT

OUT = RESULTS / "transcoders.json"


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def run(transcoders: str, n_interventions: int = 10, n_tokens: int = 64) -> dict[str, Any]:
    import torch

    from neuroscope.models.loading import load_model
    from neuroscope.transcoders.io import load_transcoders
    from neuroscope.transcoders.workbench import AttributionService

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    model = load_model("smollm2-135m", device="cpu")
    tcs = load_transcoders(transcoders, model)
    service = AttributionService(model, max_tokens=128)
    service.attach(tcs, transcoders)
    ids = model.tokenizer(f"{TEXT}. {TEXT}", add_special_tokens=False)["input_ids"]
    prompt = model.tokenizer.decode(ids[: n_tokens - 1])  # graphs prepend a special token
    with torch.inference_mode():  # as the model worker runs every call
        built, build_s = timed(service.build, prompt, 0.8, 0.98, 1000)
        gid, doc = built["graph_id"], built["graph"]
        layer = min(max(tcs.layers) + 1, model.cfg.n_layers - 1)
        qk, qk_s = timed(service.qk, prompt, layer, 0, -1, 1, 20)
        sn, sn_s = timed(service.supernodes, gid, 0.8, 0.98, 0.6, 0.5)
        feats = [n["id"] for n in service.held(gid).nodes["nodes"] if n["type"] == "feature"]
        rng = random.Random(0)
        first, first_s = timed(service.intervene, gid, [{"node": rng.choice(feats)}])
        live = []
        for _ in range(n_interventions):
            _, s = timed(service.intervene, gid, [{"node": rng.choice(feats), "mode": "scale", "value": 2.0}])
            live.append(s)
    return {
        "model": "smollm2-135m",
        "transcoders": transcoders,
        "transcoder_layers": tcs.layers,
        "prompt_tokens": len(doc["tokens"]),
        "graph": {
            "build_s": round(build_s, 3),
            "feature_nodes": doc["meta"]["n_feature_nodes"],
            "nodes_shown": len(doc["nodes"]),
            "scores": doc["meta"]["scores"],
        },
        "qk": {
            "layer": layer,
            "s": round(qk_s, 3),
            "query_nodes": qk["n_query_nodes"],
            "key_nodes": qk["n_key_nodes"],
            "score": qk["score"],
            "pair_sum": qk["pair_sum"],
        },
        "supernodes": {"s": round(sn_s, 3), "groups": len(sn["spec"]["groups"])},
        "intervene": {
            "first_s": round(first_s, 3),
            "live_median_s": round(statistics.median(live), 3),
            "live_max_s": round(max(live), 3),
            "n": len(live),
            "downstream_changed_first": len(first["downstream"]),
        },
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transcoders", default="/work/tcs/smollm2-135m")
    ap.add_argument("--interventions", type=int, default=10)
    args = ap.parse_args(argv)
    section = run(args.transcoders, args.interventions)
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data["workbench"] = section
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(section, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
