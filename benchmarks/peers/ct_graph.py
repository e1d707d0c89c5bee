"""circuit-tracer's side of the graph comparison; run with circuit-tracer's own interpreter:

    /work/venvs/ct/bin/python benchmarks/peers/ct_graph.py MODEL_DIR TC_DIR TOKENS_JSON OUT_DIR [--rounds N]

MODEL_DIR is a Hugging Face folder transformers 4.57 reads (``transcoders_peers.py`` makes it from NeuroScope's
cached smollm2-135m). TC_DIR holds ``config.yaml`` + ``layer_{i}.safetensors`` in circuit-tracer's layout;
circuit-tracer 0.5.0 only loads those from the hub or its own cache, so the config is read here and handed to
its ``load_transcoders(config)``, which takes local paths in ``transcoders``. Its loader picks JumpReLU when a
threshold is stored and ReLU otherwise (0.5.0 has a ``TopK`` class but its loader never uses it), so a TopK
config (``activation: topk``, ``k``) gets ReLU of the top k set on every transcoder here, as our transcoders
are defined (``--ct-topk``: circuit-tracer's own ``TopK``, which keeps negative top-k values).
Writes OUT_DIR/graph.safetensors (dense adjacency, features, masks) and OUT_DIR/result.json (times, RSS).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file


def peak_rss_reset() -> None:
    # writing 5 to clear_refs resets VmHWM, so the next read is the peak of what follows
    Path("/proc/self/clear_refs").write_text("5")


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_set(tc_dir: Path, input_hook: str | None, output_hook: str | None, ct_topk: bool):
    from circuit_tracer.transcoder.activation_functions import TopK

    class TopKReLU(TopK):
        """ReLU of the top k pre-activations: how NeuroScope's TopK transcoders are defined and trained
        (circuit-tracer's ``TopK`` keeps negative top-k values, which then count as active features)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(super().forward(x))

    from circuit_tracer.utils.hf_utils import load_transcoders

    config = yaml.safe_load((tc_dir / "config.yaml").read_text())
    config["transcoders"] = [str((tc_dir / p).resolve()) for p in config["transcoders"]]
    config.setdefault("scan", "neuroscope-local")
    # the nnsight backend (the only one for Llama-family models here) knows mlp.hook_in / mlp.hook_out
    config["feature_input_hook"] = input_hook or config["feature_input_hook"]
    config["feature_output_hook"] = output_hook or config["feature_output_hook"]
    tcs = load_transcoders(config, device=torch.device("cpu"), dtype=torch.float32, lazy_decoder=False)
    if config.get("activation") == "topk":
        act = TopK(int(config["k"])) if ct_topk else TopKReLU(int(config["k"]))
        for tc in tcs:
            tc.activation_function = act
    return tcs, config


def save_graph(graph, pruned, out: Path) -> None:
    save_file(
        {
            "adjacency": graph.adjacency_matrix.float().contiguous(),
            "active_features": graph.active_features.long().contiguous(),
            "selected_features": graph.selected_features.long().contiguous(),
            "activation_values": graph.activation_values.float().contiguous(),
            "logit_tokens": graph.logit_token_ids.long().contiguous(),
            "logit_probabilities": graph.logit_probabilities.float().contiguous(),
            "input_tokens": graph.input_tokens.long().contiguous(),
            "node_mask": pruned.node_mask.contiguous(),
            "edge_mask": pruned.edge_mask.contiguous(),
        },
        str(out / "graph.safetensors"),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("tc_dir")
    ap.add_argument("tokens_json")
    ap.add_argument("out_dir")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-feature-nodes", type=int, default=7500)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--node-threshold", type=float, default=0.8)
    ap.add_argument("--edge-threshold", type=float, default=0.98)
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument(
        "--ct-topk", action="store_true", help="circuit-tracer's own TopK (no ReLU) instead of ours"
    )
    ap.add_argument("--input-hook", default=None, help="override the config's feature_input_hook")
    ap.add_argument("--output-hook", default=None, help="override the config's feature_output_hook")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokens = json.loads(Path(args.tokens_json).read_text())
    t0 = time.perf_counter()
    tcs, config = load_set(Path(args.tc_dir), args.input_hook, args.output_hook, args.ct_topk)
    model = ReplacementModel.from_pretrained_and_transcoders(
        args.model_dir, tcs, backend="nnsight", device=torch.device("cpu"), dtype=torch.float32
    )
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb("VmRSS")
    times, cpu, peaks = [], [], []
    for _ in range(args.rounds):
        peak_rss_reset()
        t0, c0 = time.perf_counter(), time.process_time()
        graph = attribute(
            tokens,
            model,
            max_n_logits=10,
            desired_logit_prob=0.95,
            batch_size=args.batch_size,
            max_feature_nodes=args.max_feature_nodes,
        )
        pruned = prune_graph(graph, args.node_threshold, args.edge_threshold)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        peaks.append(rss_mb("VmHWM"))
    replacement, completeness = compute_graph_scores(graph)
    if not args.no_save:
        save_graph(graph, pruned, out)
    result = {
        "side": "circuit-tracer",
        "version": importlib.metadata.version("circuit-tracer"),
        "backend": "nnsight",
        "topk": "circuit-tracer TopK (no ReLU)"
        if args.ct_topk
        else "ReLU(TopK), as NeuroScope's transcoders",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "graph_s": times,
        "graph_cpu_s": cpu,  # user + sys of the process: what a loaded machine inflates least
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": peaks,
        "peak_rss_lifetime_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_tokens": len(tokens),
        "n_active_features": int(graph.active_features.shape[0]),
        "n_selected_features": int(graph.selected_features.shape[0]),
        "n_logits": len(graph.logit_targets),
        "pruned_nodes": int(pruned.node_mask.sum()),
        "pruned_edges": int(pruned.edge_mask.sum()),
        "replacement_score": replacement,
        "completeness_score": completeness,
        "config": {k: v for k, v in config.items() if k != "transcoders"},
        "loadavg": os.getloadavg(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(
        json.dumps({k: result[k] for k in ("graph_s", "peak_rss_mb", "n_selected_features")}), file=sys.stderr
    )


if __name__ == "__main__":
    main()
