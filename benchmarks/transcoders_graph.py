"""Attribution graphs on smollm2-135m's transcoders: time and memory (``transcoders.json`` section ``graph``).

- time: a 64-token held-out prompt (the prepended special token included) at circuit-tracer's default
  limits (node 0.8, edge 0.98, at most 7,500 feature nodes), and at 1,000 feature nodes (the live view);
  the median of ``--repeats`` fresh processes per setting;
- memory: the peak resident memory a graph adds (over the loaded model and transcoders) at 64, 128, 256 and
  512 tokens, each in a fresh process (``--mem-features`` feature nodes).

Transcoders: ``--transcoders DIR`` (default /work/tcs/smollm2-135m when it holds a finished set), else random
ones of the trained shape (d_tc 4608, TopK k=64, skip), made in seconds: the graph's cost depends on the
shape and the number of active features (k per position), not on what the weights learned; the result says
which was used. Run: ``python benchmarks/transcoders_graph.py [--threads 1] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import RESULTS, machine_info  # noqa: E402

DEFAULT_TCS = Path("/work/tcs/smollm2-135m")

_CHILD = """
import json, os, sys, threading, time
import torch
n_tokens, max_feats, threads, tcs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
page = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20
import neuroscope as ns
sys.path.insert(0, os.getcwd())
from benchmarks.graphs_bench import heldout_ids
from neuroscope.transcoders.attribution import AttributionConfig, attribute
from neuroscope.transcoders.replacement import ReplacementModel
model = ns.load_model("smollm2-135m", device="cpu")
if tcs == "random":
    sys.path.insert(0, os.path.join(os.getcwd(), "tests", "unit"))
    from transcoders_testutil import random_transcoders
    tset = random_transcoders(model, d_tc=4608, k=64, skip=True)
else:
    from neuroscope.transcoders.graph_cli import load_transcoder_set
    tset = load_transcoder_set(tcs, model)
rm = ReplacementModel(model, tset)
(ids,) = heldout_ids(model, n_tokens - 1, 1, seed=n_tokens)
attribute(rm, ids[:8], AttributionConfig(max_feature_nodes=50))  # warm-up: imports, first kernels
start = peak = rss_mb()
done = threading.Event()
def sample():
    global peak
    while not done.wait(0.01):
        peak = max(peak, rss_mb())
t = threading.Thread(target=sample, daemon=True); t.start()
t0 = time.perf_counter()
g = attribute(rm, ids, AttributionConfig(max_feature_nodes=max_feats))
pr = g.prune()
s = g.scores()
sec = time.perf_counter() - t0
done.set(); t.join(); peak = max(peak, rss_mb())
print(json.dumps({"tokens": g.n_pos, "max_feature_nodes": max_feats, "seconds": sec, "timings": g.timings,
                  "stats": g.stats, "rss_start_mb": start, "rss_peak_mb": peak, "added_mb": peak - start,
                  "active_features": int(g.active_features.shape[0]), "feature_nodes": g.n_features,
                  "kept_nodes": int(pr.node_mask.sum()), "kept_edges": int(pr.edge_mask.sum()),
                  "replacement": s.replacement, "completeness": s.completeness,
                  "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}))
"""


def one(n_tokens: int, max_feats: int, threads: int, tcs: str) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n_tokens), str(max_feats), str(threads), tcs],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def transcoders_arg(path: str | None) -> tuple[str, str]:
    p = Path(path) if path else DEFAULT_TCS
    if (p / "transcoders.json").exists():
        info = json.loads((p / "transcoders.json").read_text())
        if info.get("layers") and len(info["layers"]) == 30:
            return str(p), f"trained ({p})"
    if path:
        raise SystemExit(f"{p} holds no finished transcoder set (transcoders.json with 30 layers)")
    return "random", "random, trained shape (d_tc 4608, TopK k=64, skip): the trained set was not ready"


def save(res: dict[str, Any], keep_memory: bool) -> None:
    """Write section ``graph`` of transcoders.json (after every measurement: a cut-short run keeps its part)."""
    path = RESULTS / "transcoders.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    old = doc.get("graph", {})
    if (
        keep_memory and "memory" in old and "memory" not in res
    ):  # keep the earlier series, saying what it ran on
        res = {**res, "memory": {**old["memory"], "transcoders": old["memory"].get("transcoders")}}
    doc["graph"] = {**res, "machine_after": {"load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}}
    path.write_text(json.dumps(doc, indent=1) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    tcs, which = transcoders_arg(args.transcoders)
    res: dict[str, Any] = {"machine": machine_info(), "transcoders": which, "threads": args.threads}
    for label, mf, reps in (
        ("default_limits", 7500, args.repeats_default),
        ("live_1000", 1000, args.repeats),
    ):
        runs = [one(64, mf, args.threads, tcs) for _ in range(reps)]
        res[label] = {"median_s": statistics.median(r["seconds"] for r in runs), "runs": runs}
        print(label, res[label]["median_s"], file=sys.stderr)
        save(res, args.skip_memory)
    if not args.skip_memory:
        mem: dict[str, Any] = {"max_feature_nodes": args.mem_features, "transcoders": which, "by_tokens": []}
        res["memory"] = mem
        for n in (64, 128, 256, 512):
            mem["by_tokens"].append(one(n, args.mem_features, args.threads, tcs))
            print("memory", n, mem["by_tokens"][-1]["added_mb"], file=sys.stderr)
            save(res, False)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="runs at 1,000 feature nodes")
    ap.add_argument("--repeats-default", type=int, default=3, help="runs at the default limits")
    ap.add_argument("--mem-features", type=int, default=1000)
    ap.add_argument("--transcoders", default=None)
    ap.add_argument("--skip-memory", action="store_true")
    res = run(ap.parse_args())
    print(json.dumps({k: v for k, v in res.items() if k != "memory"}, indent=1)[:2000])


if __name__ == "__main__":
    main()
