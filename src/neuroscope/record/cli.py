"""``neuroscope trace`` and ``neuroscope corpus prepare``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neuroscope.cli import run_parsed, set_threads


def _trace(args: argparse.Namespace) -> int:
    from neuroscope.models.loading import load_model
    from neuroscope.record.datasets import CORPUS_FILE, DEFAULT_CORPUS_DIR, ensure_default_corpus
    from neuroscope.record.writer import TraceConfig, record, resolve_hooks

    set_threads(args.threads)
    data = args.data
    if data is None:
        if not (Path(DEFAULT_CORPUS_DIR) / CORPUS_FILE).exists():
            print(
                f"preparing the default corpus in {DEFAULT_CORPUS_DIR} (python3-doc prose) …", file=sys.stderr
            )
        data = str(ensure_default_corpus(DEFAULT_CORPUS_DIR))
    if args.ray or args.address:  # --address alone means --ray
        return _trace_ray(args, data)
    model = load_model(args.model, device=args.device, quantize=args.quantize)
    hooks = resolve_hooks(model, args.layer or [], args.hook or ["resid_post"])
    cfg = TraceConfig(
        hooks=hooks,
        data=data,
        split=args.split,
        tokens=args.tokens,
        ctx_len=args.ctx_len,
        batch_size=args.batch_size,
        shard_tokens=args.shard_tokens,
        dtype=args.dtype,
    )
    result = record(model, cfg, args.out, progress=not args.no_progress)
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def _trace_ray(args: argparse.Namespace, data: str) -> int:
    from neuroscope.record.distributed import ModelLoad, RayConfig, record_ray
    from neuroscope.record.writer import TraceConfig

    cfg = TraceConfig(
        hooks=tuple(args.hook or ["resid_post"]),  # resolved by the worker that loads the model
        data=data,
        split=args.split,
        tokens=args.tokens,
        ctx_len=args.ctx_len,
        batch_size=args.batch_size,
        shard_tokens=args.shard_tokens,
        dtype=args.dtype,
    )
    rcfg = RayConfig(
        address=args.address,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        threads_per_worker=args.threads,
    )
    load = ModelLoad(args.model, device=args.device, quantize=args.quantize)
    result = record_ray(
        load, cfg, args.out, rcfg, layers=tuple(args.layer or ()), progress=not args.no_progress
    )
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from neuroscope.record.datasets import prepare_corpus

    info = prepare_corpus(args.out, root=args.root, heldout_fraction=args.heldout_fraction)
    print(json.dumps(info.to_dict(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "trace",
        help="record activations at hook points into Parquet shards (resumable)",
        description="Record activations into a folder of Parquet shards plus manifest.json. Running the same "
        "command again continues an interrupted recording. An --out ending in .parquet (the seed's "
        "`--out acts.parquet`) is a folder of that name, readable as one table with "
        "pyarrow.dataset.dataset(FOLDER, exclude_invalid_files=True) or DuckDB's 'FOLDER/*.parquet'.",
    )
    p.add_argument("--model", default="smollm2-135m", help="model spec: alias, folder, .gguf or tiny:TYPE")
    p.add_argument("--layer", type=int, nargs="*", help="layer(s) for short hook names such as resid_post")
    p.add_argument(
        "--hook",
        action="append",
        help="hook (repeatable; default resid_post): resid_post, mlp_out, attn.hook_z, or a full name "
        "such as blocks.3.hook_resid_pre; several hooks are recorded in one pass",
    )
    p.add_argument(
        "--data",
        default=None,
        help="a prepared corpus folder, or .txt/.jsonl/.parquet file(s) or a folder of them "
        "(default: data/corpus, prepared from python3-doc when absent)",
    )
    p.add_argument(
        "--split", default="train", choices=["train", "heldout"], help="split of a prepared corpus"
    )
    p.add_argument(
        "--tokens", type=int, default=200_000, help="tokens to record (rounded up to whole contexts)"
    )
    p.add_argument("--ctx-len", type=int, default=128, help="tokens per context, the first being BOS")
    p.add_argument("--batch-size", type=int, default=8, help="contexts per forward pass")
    p.add_argument(
        "--shard-tokens", type=int, default=65_536, help="rows per shard (rounded to whole contexts)"
    )
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--out", required=True, help="output folder (created; an existing recording is resumed)")
    p.add_argument("--device", default=None)
    p.add_argument(
        "--quantize",
        default=None,
        choices=["int8", "nf4"],
        help="load the model in 8 or 4 bits (bitsandbytes)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (per worker with --ray)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    r = p.add_argument_group("distributed recording (Ray Data; same shards and manifest, same resume)")
    r.add_argument("--ray", action="store_true", help="record on Ray workers, one model per worker")
    r.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' (the cluster this machine is part of) or HOST:PORT; "
        "default: start a local Ray instance sized for --workers",
    )
    r.add_argument("--workers", type=int, default=2, help="recording actors (each loads the model once)")
    r.add_argument("--cpus-per-worker", type=float, default=1.0)
    r.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        help="GPUs per worker (default: 1 when the cluster has GPUs, else 0)",
    )
    p.set_defaults(func=_trace)

    c = subparsers.add_parser("corpus", help="prepare the default offline English corpus")
    csub = c.add_subparsers(dest="corpus_command", required=True)
    q = csub.add_parser(
        "prepare", help="extract prose from the Python docs (apt package python3-doc) into train/heldout"
    )
    q.add_argument("--out", default="data/corpus")
    q.add_argument(
        "--root", default=None, help="HTML folder to read (default: the newest /usr/share/doc/python3.X/html)"
    )
    q.add_argument("--heldout-fraction", type=float, default=0.1)
    q.set_defaults(func=_prepare)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m neuroscope.record.cli``) with the same subcommands."""
    parser = argparse.ArgumentParser(prog="neuroscope")
    register(parser.add_subparsers(dest="command", required=True))
    return run_parsed(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
