"""NeuroScope's transcoders beside their peers -> benchmarks/results/transcoders.json ``vs_circuit_tracer`` and
``vs_sparsify`` (only those sections; the file's other sections are kept).

    bash benchmarks/peers/make_envs.sh                      # /work/venvs/ct, /work/venvs/sparsify (once)
    python benchmarks/transcoders_peers.py graph --transcoders DIR --prompt-tokens 64 --rounds 3
    python benchmarks/transcoders_peers.py train --layers 3 15 --tokens 32768 --heldout-tokens 8192

Every side runs as a process of its own (``nice -n 5``, ``OMP_NUM_THREADS`` threads): circuit-tracer 0.5
(``benchmarks/peers/ct_graph.py``) and eai-sparsify (``benchmarks/peers/sparsify_train.py``) with their own
interpreters (their pins conflict with ours), ours with this one (``benchmarks/peers/ours_*.py``). Rounds
alternate which side goes first, so load from the shared machine hits both alike; the load average is stored
beside every time.

``graph``: the same token ids (a special token first, as both prepend), the same transcoders, circuit-tracer's
defaults (10 logits to 95%, node 0.8, edge 0.98, ``--max-feature-nodes``). Compared: the active and the
selected feature sets, the logits, every adjacency entry (relative difference), the pruned node and edge sets,
replacement/completeness scores, the graph's wall time (median over rounds) and peak RSS (``VmHWM`` reset
before the graph). circuit-tracer reads the model from a Hugging Face folder written for transformers 4.57
(see ``peer_model_dir``).

``train``: skip transcoders (TopK, same width and k) on the same layers and the same token contexts (the
corpus's train split packed as the recorder packs it; held-out FVU on its held-out split), ours through
``train_transcoders`` (one recording pass, then per-layer training), sparsify through its ``Trainer`` on live
forward passes. Both sides' transcoders are scored by one held-out FVU function (sparsify_train.py, float32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import RESULTS, machine_info  # noqa: E402

PEERS = REPO / "benchmarks" / "peers"
VENVS = Path(os.environ.get("PEER_VENVS", "/work/venvs"))
WORK = Path(os.environ.get("PEER_WORK", Path(tempfile.gettempdir()) / "neuroscope-peers"))
OUT = RESULTS / "transcoders.json"
MODEL = "smollm2-135m"


def peer_model_dir(out: Path = WORK / "smollm2-135m-hf") -> Path:
    """NeuroScope's cached smollm2-135m as a folder transformers 4.57 (circuit-tracer's pin) loads the same:
    ``rope_theta`` spelled out (4.57 ignores ``rope_parameters`` and would use 10000), ``architectures`` (read by
    circuit-tracer), a fast-tokenizer class 4.57 knows, ``format: pt`` metadata and the tied embedding stored
    as ``model.embed_tokens.weight`` (the cache holds only ``lm_head.weight``; 4.57 and a bare ``AutoModel``
    would leave the embedding uninitialised)."""
    if (out / "model.safetensors").is_file():
        return out
    from safetensors.torch import load_file, save_file

    from neuroscope.models.loading import alias_path, gguf_cache_dir, load_model

    load_model(MODEL, device="cpu")  # makes sure the cache exists
    src = gguf_cache_dir(alias_path(MODEL))
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((src / "config.json").read_text())
    cfg["rope_theta"] = cfg.get("rope_parameters", {}).get("rope_theta", cfg.get("rope_theta"))
    cfg["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    tok = json.loads((src / "tokenizer_config.json").read_text())
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    (out / "tokenizer_config.json").write_text(json.dumps(tok, indent=1))
    (out / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    state = load_file(str(src / "model.safetensors"))
    if "model.embed_tokens.weight" not in state:
        state["model.embed_tokens.weight"] = state.pop("lm_head.weight")
    tmp = out / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / "model.safetensors")
    return out


def prompt_tokens(n: int) -> list[int]:
    """``n`` token ids: the start token both sides prepend (SmolLM2's bos, ``<|im_start|>``), then the start of
    the corpus's first held-out document (plain English prose)."""
    from transformers import AutoTokenizer

    from neuroscope.record.datasets import load_documents, resolve_data

    tok = AutoTokenizer.from_pretrained(str(peer_model_dir()))
    ids: list[int] = []
    for doc in load_documents(resolve_data(REPO / "data" / "corpus", "heldout")):
        ids += tok(doc.text, add_special_tokens=False)["input_ids"]
        if len(ids) >= n - 1:
            break
    return [int(tok.bos_token_id)] + ids[: n - 1]


def run(cmd: list[str], threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO / "src")}
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(["nice", "-n", "5", *cmd], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"{cmd[1]} failed ({proc.returncode})")


def spread(xs: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "all": xs}


def save_section(key: str, value: dict[str, Any]) -> None:
    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    data[key] = value
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT} [{key}]")


def cmd_graph(a: argparse.Namespace) -> None:
    from benchmarks.peers.compare_graphs import compare

    model_dir = peer_model_dir()
    work = WORK / f"graph-{a.label or Path(a.transcoders).name}-{a.prompt_tokens}-{a.max_feature_nodes}"
    work.mkdir(parents=True, exist_ok=True)
    tokens = prompt_tokens(a.prompt_tokens)
    (work / "tokens.json").write_text(json.dumps(tokens))
    common = ["--max-feature-nodes", str(a.max_feature_nodes), "--batch-size", str(a.batch_size)]
    sides = {
        "circuit_tracer": [
            str(VENVS / "ct/bin/python"),
            str(PEERS / "ct_graph.py"),
            str(model_dir),
            a.transcoders,
        ]
        + ["--input-hook", "mlp.hook_in", "--output-hook", "mlp.hook_out"]
        + (["--ct-topk"] if a.ct_topk else []),
        "neuroscope": [sys.executable, str(PEERS / "ours_graph.py"), MODEL, a.transcoders],
    }
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    loads = []
    for r in range(a.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for side in order:
            out = work / f"{side}-r{r}"
            extra = [] if r == 0 else ["--no-save"]
            run([*sides[side], str(work / "tokens.json"), str(out), *common, *extra], a.threads)
            results[side].append(json.loads((out / "result.json").read_text()))
            loads.append(os.getloadavg()[0])
    cmp = compare(
        work / "circuit_tracer-r0" / "graph.safetensors", work / "neuroscope-r0" / "graph.safetensors"
    )
    per_side = {}
    for side, rs in results.items():
        t = [x for res in rs for x in res["graph_s"]]
        per_side[side] = {
            "graph_s": spread(t),
            "graph_cpu_s": spread([x for res in rs for x in res["graph_cpu_s"]]),
            "peak_rss_mb": spread([x for res in rs for x in res["peak_rss_mb"]]),
            "rss_loaded_mb": statistics.median(res["rss_loaded_mb"] for res in rs),
            "load_s": statistics.median(res["load_s"] for res in rs),
            **{k: rs[0][k] for k in ("n_tokens", "n_active_features", "n_selected_features", "n_logits")},
            **{
                k: rs[0][k]
                for k in ("pruned_nodes", "pruned_edges", "replacement_score", "completeness_score")
            },
            "loadavg_per_round": [res["loadavg"] for res in rs],
        }
    pairs = list(zip(results["circuit_tracer"], results["neuroscope"], strict=True))
    ratios = [c["graph_s"][0] / o["graph_s"][0] for c, o in pairs]
    cpu_ratios = [c["graph_cpu_s"][0] / o["graph_cpu_s"][0] for c, o in pairs]
    section = {
        "what": "the same attribution graph from circuit-tracer 0.5.0 (nnsight backend, its own venv) and "
        "NeuroScope, same CPU, same transcoders and token ids; times are attribute + prune, model load excluded",
        "commands": " ".join(sys.argv[1:]),
        "transcoders": a.transcoders,
        "prompt_tokens": tokens,
        "max_feature_nodes": a.max_feature_nodes,
        "batch_size": a.batch_size,
        "threads": a.threads,
        "rounds": a.rounds,
        "sides": per_side,
        "speedup_paired": spread(ratios),
        "speedup_cpu_time_paired": spread(cpu_ratios),
        "peak_rss_ratio": per_side["circuit_tracer"]["peak_rss_mb"]["median"]
        / per_side["neuroscope"]["peak_rss_mb"]["median"],
        "match": cmp,
        "goals": {
            "same_nodes": cmp["selected_features_equal"] and cmp["pruned_nodes_equal"],
            "edges_within_1e-3": cmp["edges"]["max_rel_diff"] <= 1e-3,
            "speedup_5x": statistics.median(ratios) >= 5.0,
        },
        "machine": machine_info(),
        "loadavg_during": spread(loads),
    }
    key = a.key or "vs_circuit_tracer"
    prev = json.loads(OUT.read_text()).get(key, {}) if OUT.is_file() else {}
    runs = {k: v for k, v in prev.get("runs", {}).items()} if isinstance(prev, dict) else {}
    runs[f"{a.label or Path(a.transcoders).name}_{a.prompt_tokens}tok_{a.max_feature_nodes}nodes"] = section
    save_section(key, {"runs": runs})
    print(json.dumps({k: section[k] for k in ("speedup_paired", "goals")}, indent=1))


def cmd_train(a: argparse.Namespace) -> None:
    import numpy as np

    model_dir = peer_model_dir()
    work = WORK / f"train-L{'-'.join(map(str, a.layers))}-{a.tokens}-{a.d_tc}x{a.k}"
    work.mkdir(parents=True, exist_ok=True)
    from transformers import AutoTokenizer

    from neuroscope.record.datasets import iter_contexts, load_documents, resolve_data

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    files = {}
    for split, n in (("train", a.tokens), ("heldout", a.heldout_tokens)):
        docs = load_documents(resolve_data(REPO / "data" / "corpus", split))
        ctx = list(iter_contexts(docs, tok, a.ctx_len, max_contexts=max(1, n // a.ctx_len)))
        files[split] = work / f"{split}.npy"
        np.save(files[split], np.stack([c.numpy() for c in ctx]))
    layers = [str(x) for x in a.layers]
    common = ["--layers", *layers, "--d-tc", str(a.d_tc), "--k", str(a.k)]
    results: dict[str, list[dict[str, Any]]] = {"neuroscope": [], "sparsify": []}
    for r in range(a.rounds):
        order = ["neuroscope", "sparsify"] if r % 2 == 0 else ["sparsify", "neuroscope"]
        for side in order:
            out = work / f"{side}-r{r}"
            if side == "neuroscope":
                run(
                    [sys.executable, str(PEERS / "ours_train.py"), MODEL, str(out), *common]
                    + ["--tokens", str(a.tokens), "--heldout-tokens", str(a.heldout_tokens)]
                    + [
                        "--ctx-len",
                        str(a.ctx_len),
                        "--batch-size",
                        str(a.batch_seqs * a.ctx_len),
                        "--lr",
                        str(a.lr),
                    ]
                    + ["--check-tokens", str(files["train"])],
                    a.threads,
                )
            else:
                run(
                    [str(VENVS / "sparsify/bin/python"), str(PEERS / "sparsify_train.py"), str(model_dir)]
                    + [str(files["train"]), str(files["heldout"]), str(out), *common]
                    + ["--batch-seqs", str(a.batch_seqs), "--ours-dir", str(work / "neuroscope-r0" / "tcs")],
                    a.threads,
                )
            results[side].append(json.loads((out / "result.json").read_text()))
    ours, theirs = results["neuroscope"], results["sparsify"]
    ratios = [o["tokens_per_s"] / t["tokens_per_s"] for o, t in zip(ours, theirs, strict=True)]
    cpu_ratios = [o["tokens_per_cpu_s"] / t["tokens_per_cpu_s"] for o, t in zip(ours, theirs, strict=True)]
    fvu_ours = theirs[-1]["ours_per_layer"]
    fvu_theirs = theirs[-1]["per_layer"]
    within = {
        l: abs(fvu_ours[l]["fvu"] - fvu_theirs[l]["fvu"]) <= 0.1 * fvu_theirs[l]["fvu"] for l in fvu_theirs
    }
    section = {
        "what": "skip transcoders (TopK) on the same layers, width, k and token contexts, both on this CPU; "
        "tokens/s = training tokens / wall seconds (ours: recording both splits + training every layer; "
        "sparsify: its Trainer.fit on live forward passes); held-out FVU of both sides by one function "
        "(benchmarks/peers/sparsify_train.py, float32, live activations)",
        "commands": " ".join(sys.argv[1:]),
        "layers": a.layers,
        "d_tc": a.d_tc,
        "k": a.k,
        "tokens": a.tokens,
        "heldout_tokens": a.heldout_tokens,
        "ctx_len": a.ctx_len,
        "batch_tokens": a.batch_seqs * a.ctx_len,
        "threads": a.threads,
        "neuroscope": {"tokens_per_s": spread([o["tokens_per_s"] for o in ours]), "runs": ours},
        "sparsify": {"tokens_per_s": spread([t["tokens_per_s"] for t in theirs]), "runs": theirs},
        "speedup_paired": spread(ratios),
        "speedup_cpu_time_paired": spread(cpu_ratios),
        "heldout_fvu": {"neuroscope": fvu_ours, "sparsify": fvu_theirs, "within_10pct": within},
        "goals": {"equal_quality": all(within.values()), "speedup_1.5x": statistics.median(ratios) >= 1.5},
        "machine": machine_info(),
    }
    prev = json.loads(OUT.read_text()).get("vs_sparsify", {}) if OUT.is_file() else {}
    runs = dict(prev.get("runs", {}))
    runs[f"L{'-'.join(layers)}_{a.tokens}tok_{a.d_tc}x{a.k}"] = section
    save_section("vs_sparsify", {"runs": runs})
    print(json.dumps({k: section[k] for k in ("speedup_paired", "heldout_fvu", "goals")}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("graph", help="the same graph from circuit-tracer and from NeuroScope")
    g.add_argument("--transcoders", required=True, help="folder in circuit-tracer's layout")
    g.add_argument("--prompt-tokens", type=int, default=64)
    g.add_argument("--max-feature-nodes", type=int, default=7500)
    g.add_argument("--batch-size", type=int, default=256)
    g.add_argument("--rounds", type=int, default=3)
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--key", default=None, help="result section (default vs_circuit_tracer)")
    g.add_argument("--ct-topk", action="store_true", help="circuit-tracer's TopK (no ReLU) on its side")
    g.add_argument("--label", default=None, help="names the run in the section (default: the folder's name)")
    t = sub.add_parser("train", help="skip-transcoder training speed and quality against eai-sparsify")
    t.add_argument("--layers", type=int, nargs="+", default=[3, 15])
    t.add_argument("--tokens", type=int, default=32768)
    t.add_argument("--heldout-tokens", type=int, default=8192)
    t.add_argument("--d-tc", type=int, default=4608)
    t.add_argument("--k", type=int, default=64)
    t.add_argument("--ctx-len", type=int, default=128)
    t.add_argument("--batch-seqs", type=int, default=4, help="sequences per batch (x ctx-len tokens)")
    t.add_argument("--lr", type=float, default=2e-3, help="ours (sparsify keeps its own default)")
    t.add_argument("--rounds", type=int, default=1)
    t.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    {"graph": cmd_graph, "train": cmd_train}[a.cmd](a)


if __name__ == "__main__":
    main()
