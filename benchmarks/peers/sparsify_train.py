"""eai-sparsify's side of the training comparison; run with sparsify's own interpreter:

    /work/venvs/sparsify/bin/python benchmarks/peers/sparsify_train.py MODEL_DIR TOKENS.npy HELDOUT.npy OUT_DIR \
        --layers 3 15 --d-tc 4608 --k 64 --batch-seqs 8 --exclude 0

Trains skip transcoders (``SparseCoderConfig(transcode=True, skip_connection=True)``) on the MLPs of the
given layers (hookpoints ``layers.{l}.mlp``: input = the MLP's input after ``post_attention_layernorm``,
output = ``mlp`` output, i.e. NeuroScope's ``blocks.{l}.ln2.hook_normalized`` -> ``blocks.{l}.hook_mlp_out``)
through sparsify's own ``Trainer`` on live forward passes, from token contexts prepared by
``transcoders_peers.py`` (a local ``datasets.Dataset`` of ``input_ids``: nothing from the hub). Its CLI
(``python -m sparsify``) cannot be used on a CPU: it loads the model with ``device_map={"": "cuda:0"}``.
Then measures the held-out FVU (squared error over the variance about the mean, over all held-out tokens
but the excluded ones) of every layer in float32. Writes OUT_DIR/result.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch


def sparsify_fn(sae):
    def predict(x, y):
        out = sae(x, y)
        return out.sae_out, (out.latent_acts > 0).sum(-1)

    return predict


def ours_fn(path: Path, k: int):
    """NeuroScope's transcoder from its circuit-tracer-layout file: ReLU of the top k pre-activations,
    decoded, plus ``x @ W_skip.T``."""
    from safetensors.torch import load_file

    w = load_file(str(path))

    def predict(x, y):
        vals, idx = torch.nn.functional.linear(x, w["W_enc"], w["b_enc"]).topk(k, dim=-1)
        vals = vals.relu()
        y_hat = (vals.unsqueeze(-1) * w["W_dec"][idx]).sum(-2) + w["b_dec"]
        if "W_skip" in w:
            y_hat = y_hat + x @ w["W_skip"].T
        return y_hat, (vals > 0).sum(-1)

    return predict


@torch.no_grad()
def heldout_fvu(model, fns: dict, contexts: torch.Tensor, exclude: list[int], batch: int) -> dict[str, dict]:
    """Per (hookpoint, side) the FVU of ``fns[...]`` on every kept held-out token: summed squared error over
    the summed squared deviation of the MLP output from its mean; and the mean L0."""
    stats = {key: {"err": 0.0, "sum": None, "sq": 0.0, "n": 0, "l0": 0.0} for key in fns}
    names = sorted({name for name, _ in fns})
    pairs: dict[str, tuple] = {}

    def grab(name):
        def hook(module, inputs, output):
            pairs[name] = (inputs[0], output[0] if isinstance(output, tuple) else output)

        return hook

    handles = [model.get_submodule(name).register_forward_hook(grab(name)) for name in names]
    try:
        for i in range(0, contexts.shape[0], batch):
            ids = contexts[i : i + batch]
            keep = ~torch.isin(ids, torch.tensor(exclude, dtype=torch.long)).flatten()
            model(ids)
            for (name, side), fn in fns.items():
                x, y = (t.flatten(0, 1)[keep].float() for t in pairs[name])
                y_hat, l0 = fn(x, y)
                s = stats[(name, side)]
                s["err"] += float((y - y_hat).double().pow(2).sum())
                s["sum"] = y.double().sum(0) if s["sum"] is None else s["sum"] + y.double().sum(0)
                s["sq"] += float(y.double().pow(2).sum())
                s["n"] += int(y.shape[0])
                s["l0"] += float(l0.sum())
    finally:
        for h in handles:
            h.remove()
    result: dict = {}
    for key, s in stats.items():
        total = s["sq"] - float(s["sum"].pow(2).sum()) / s["n"]
        result[key] = {"fvu": s["err"] / total, "l0": s["l0"] / s["n"], "heldout_tokens": s["n"]}
    return result


def cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("tokens")
    ap.add_argument("heldout")
    ap.add_argument("out_dir")
    ap.add_argument("--layers", type=int, nargs="+", required=True)
    ap.add_argument("--d-tc", type=int, default=4608)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--batch-seqs", type=int, default=8)
    ap.add_argument("--exclude", type=int, nargs="*", default=[0])
    ap.add_argument("--optimizer", default="signum")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument(
        "--ours-dir", default=None, help="NeuroScope's transcoders (layer_{l}.safetensors) to score too"
    )
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from datasets import Dataset
    from sparsify import SparseCoderConfig, TrainConfig, Trainer
    from transformers import AutoModel

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    train = np.load(args.tokens)
    dataset = Dataset.from_dict({"input_ids": train.tolist()}).with_format("torch")
    cfg = TrainConfig(
        SparseCoderConfig(num_latents=args.d_tc, k=args.k, transcode=True, skip_connection=True),
        batch_size=args.batch_seqs,
        hookpoints=[f"layers.{l}.mlp" for l in args.layers],
        exclude_tokens=args.exclude,
        optimizer=args.optimizer,
        lr=args.lr,
        log_to_wandb=False,
        save_every=10**9,
        save_dir=str(out / "checkpoints"),
    )
    trainer = Trainer(cfg, dataset, model)
    t0, c0 = time.perf_counter(), cpu_s()
    trainer.fit()
    seconds = time.perf_counter() - t0
    cpu = cpu_s() - c0
    n_batches = train.shape[0] // args.batch_seqs
    seen = train[: n_batches * args.batch_seqs]
    trained_tokens = int((~np.isin(seen, args.exclude)).sum())
    held = torch.from_numpy(np.load(args.heldout)).long()
    fns = {(f"layers.{l}.mlp", "sparsify"): sparsify_fn(trainer.saes[f"layers.{l}.mlp"]) for l in args.layers}
    if args.ours_dir:
        for l in args.layers:
            fns[(f"layers.{l}.mlp", "neuroscope")] = ours_fn(
                Path(args.ours_dir) / f"layer_{l}.safetensors", args.k
            )
    quality = heldout_fvu(model, fns, held, args.exclude, args.batch_seqs)
    result = {
        "side": "eai-sparsify",
        "version": __import__("importlib.metadata").metadata.version("eai-sparsify"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "layers": args.layers,
        "d_tc": args.d_tc,
        "k": args.k,
        "optimizer": args.optimizer,
        "lr": [g["lr"] for opt in trainer.optimizers for g in opt.param_groups][:1],
        "batch_tokens": args.batch_seqs * train.shape[1],
        "train_seconds": seconds,
        "cpu_seconds": cpu,  # user + sys of this process and its children during fit
        "tokens_per_cpu_s": trained_tokens / cpu,
        "train_tokens": trained_tokens,
        "tokens_per_s": trained_tokens / seconds,
        "per_layer": {str(l): quality[(f"layers.{l}.mlp", "sparsify")] for l in args.layers},
        "ours_per_layer": {str(l): quality[(f"layers.{l}.mlp", "neuroscope")] for l in args.layers}
        if args.ours_dir
        else None,
        "loadavg": os.getloadavg(),
        "note": "live forward passes: the time includes the model's forward over every batch",
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["per_layer"]), result["tokens_per_s"])


if __name__ == "__main__":
    main()
