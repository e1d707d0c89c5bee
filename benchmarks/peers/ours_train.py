"""NeuroScope's side of the training comparison (the project's interpreter, a process of its own):

    python benchmarks/peers/ours_train.py MODEL OUT_DIR --layers 3 15 --d-tc 4608 --k 64 --tokens 32768 \
        --heldout-tokens 8192 --check-tokens TRAIN.npy

Trains TopK skip transcoders with :func:`neuroscope.transcoders.train.train_transcoders` (what
``neuroscope train-transcoders`` runs: one recording pass of both splits, then each layer) into OUT_DIR/tcs and
writes OUT_DIR/result.json. tokens/s counts the recording of BOTH splits and the training of every layer (the
held-out recording is evaluation, so this is conservative). ``--check-tokens`` confirms that the recorder saw
the very token contexts handed to sparsify."""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch


def cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out_dir")
    ap.add_argument("--layers", type=int, nargs="+", required=True)
    ap.add_argument("--d-tc", type=int, default=4608)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--heldout-tokens", type=int, default=8192)
    ap.add_argument("--ctx-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--check-tokens", default=None)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from neuroscope.models.loading import load_model
    from neuroscope.record.reader import ActivationStore
    from neuroscope.transcoders.train import TCTrainConfig, train_transcoders

    out = Path(args.out_dir)
    model = load_model(args.model, device="cpu")
    cfg = TCTrainConfig(
        layers=tuple(args.layers),
        tokens=args.tokens,
        heldout_tokens=args.heldout_tokens,
        d_tc=args.d_tc,
        k=args.k,
        activation="topk",
        skip=True,
        batch_size=args.batch_size,
        lr=args.lr,
        ctx_len=args.ctx_len,
        data=str(Path(__file__).resolve().parents[2] / "data" / "corpus"),
    )
    t0, c0 = time.perf_counter(), cpu_s()
    res = train_transcoders(model, cfg, out / "tcs", progress=False)
    wall = time.perf_counter() - t0
    cpu = cpu_s() - c0
    train_s = sum(r["train_seconds"] for r in res.per_layer)
    tokens = res.per_layer[0]["train_tokens"]
    same = None
    if args.check_tokens:
        store = ActivationStore(out / "tcs" / "acts" / "train")
        seen = store.read_all(f"blocks.{args.layers[0]}.ln2.hook_normalized").token_id
        want = torch.from_numpy(np.load(args.check_tokens)).flatten()
        same = bool(torch.equal(seen.sort().values, want.sort().values)) and bool(
            torch.equal(seen[: want.numel()], want[: seen.numel()])
        )
    result = {
        "side": "neuroscope",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "layers": args.layers,
        "record_seconds": res.record_seconds,
        "train_seconds": train_s,
        "wall_seconds": wall,
        "cpu_seconds": cpu,  # user + sys of this process and its children, recording + training + evaluation
        "train_tokens": tokens,
        "tokens_per_s": tokens / (res.record_seconds + train_s),
        "tokens_per_cpu_s": tokens / cpu,
        "per_layer": {str(r["layer"]): r for r in res.per_layer},
        "same_tokens_as_sparsify": same,
        "loadavg": os.getloadavg(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("tokens_per_s", "record_seconds", "train_seconds")}))


if __name__ == "__main__":
    main()
