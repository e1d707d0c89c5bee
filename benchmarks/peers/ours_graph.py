"""NeuroScope's side of the graph comparison (the project's interpreter, a process of its own):

    python benchmarks/peers/ours_graph.py MODEL TC_DIR TOKENS_JSON OUT_DIR [--max-feature-nodes 7500]

Loads the model (``smollm2-135m``) and the transcoders (``neuroscope.transcoders.io.load_transcoders``; a
folder with only circuit-tracer's ``config.yaml``, as ``random_transcoders.py`` writes, is read from that
layout), builds the graph with :func:`neuroscope.transcoders.attribution.attribute` on the given token ids,
prunes it (node 0.8, edge 0.98) and writes OUT_DIR/graph.safetensors (CSR adjacency, features, masks) and
OUT_DIR/result.json (times, peak RSS), in the form ``ct_graph.py`` writes for circuit-tracer."""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_set(tc_dir: Path, model):
    from neuroscope.transcoders.model import Transcoder, TranscoderConfig, TranscoderSet

    if (tc_dir / "transcoders.json").is_file():
        from neuroscope.transcoders.io import load_transcoders

        return load_transcoders(tc_dir, model)
    # circuit-tracer's layout only (random_transcoders.py): W_enc / W_skip are stored transposed
    config = json.loads((tc_dir / "config.yaml").read_text())
    tcs = {}
    for layer, name in enumerate(config["transcoders"]):
        state = load_file(str(tc_dir / name))
        d_tc, d_in = state["W_enc"].shape
        cfg = TranscoderConfig(
            d_in=d_in,
            d_tc=d_tc,
            layer=layer,
            activation=config.get("activation", "relu"),
            k=config.get("k"),
            skip="W_skip" in state,
            model_name=model.cfg.name,
        )
        tc = Transcoder(cfg)
        with torch.no_grad():
            tc.W_enc.copy_(state["W_enc"].t())
            tc.W_dec.copy_(state["W_dec"])
            tc.b_enc.copy_(state["b_enc"])
            tc.b_dec.copy_(state["b_dec"])
            if tc.W_skip is not None:
                tc.W_skip.copy_(state["W_skip"].t())
        tcs[layer] = tc.requires_grad_(False)
    return TranscoderSet(model.cfg.name, tcs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("tc_dir")
    ap.add_argument("tokens_json")
    ap.add_argument("out_dir")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-feature-nodes", type=int, default=7500)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--node-threshold", type=float, default=0.8)
    ap.add_argument("--edge-threshold", type=float, default=0.98)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from neuroscope.models.loading import load_model
    from neuroscope.transcoders.attribution import AttributionConfig, attribute
    from neuroscope.transcoders.replacement import ReplacementModel

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokens = json.loads(Path(args.tokens_json).read_text())
    t0 = time.perf_counter()
    model = load_model(args.model, device="cpu")
    rm = ReplacementModel(model, load_set(Path(args.tc_dir), model))
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb("VmRSS")
    cfg = AttributionConfig(
        max_feature_nodes=args.max_feature_nodes,
        batch_size=args.batch_size,
        node_threshold=args.node_threshold,
        edge_threshold=args.edge_threshold,
    )
    times, cpu, peaks = [], [], []
    for _ in range(args.rounds):
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak of the graph alone
        t0, c0 = time.perf_counter(), time.process_time()
        graph = attribute(rm, tokens, cfg)
        pruned = graph.prune(args.node_threshold, args.edge_threshold)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        peaks.append(rss_mb("VmHWM"))
    scores = graph.scores()
    adj = graph.adjacency
    if not args.no_save:
        save_file(
            {
                "crow": adj.crow.long().contiguous(),
                "cols": adj.cols.long().contiguous(),
                "vals": adj.vals.float().contiguous(),
                "active_features": graph.active_features.long().contiguous(),
                "selected_features": graph.selected_features.long().contiguous(),
                "activation_values": graph.activation_values.float().contiguous(),
                "logit_tokens": graph.logit_tokens.long().contiguous(),
                "logit_probabilities": graph.logit_probabilities.float().contiguous(),
                "input_tokens": graph.tokens.long().contiguous(),
                "node_mask": pruned.node_mask.contiguous(),
                "edge_mask": pruned.edge_mask.contiguous(),
            },
            str(out / "graph.safetensors"),
        )
    result = {
        "side": "neuroscope",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "graph_s": times,
        "graph_cpu_s": cpu,  # user + sys of the process: what a loaded machine inflates least
        "timings_last": getattr(graph, "timings", {}),
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": peaks,
        "peak_rss_lifetime_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_tokens": len(tokens),
        "n_active_features": int(graph.active_features.shape[0]),
        "n_selected_features": int(graph.selected_features.shape[0]),
        "n_logits": int(graph.logit_tokens.shape[0]),
        "pruned_nodes": int(pruned.node_mask.sum()),
        "pruned_edges": int(pruned.edge_mask.sum()),
        "replacement_score": scores.replacement,
        "completeness_score": scores.completeness,
        "loadavg": os.getloadavg(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
