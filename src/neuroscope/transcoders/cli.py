"""``neuroscope train-transcoders`` and ``neuroscope transcoders quality``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from neuroscope.cli import set_threads


def _progress(stage: str, fraction: float) -> None:
    if fraction == 0.0 or stage.startswith("done"):
        print(f"[{time.strftime('%H:%M:%S')}] {stage}", file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> int:
    from neuroscope.models.loading import load_model
    from neuroscope.sae.suite import parse_layers
    from neuroscope.transcoders.train import TCTrainConfig, train_transcoders

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    cfg = TCTrainConfig(
        layers=parse_layers(args.layers),
        tokens=args.tokens,
        heldout_tokens=args.heldout_tokens,
        d_tc=args.d_tc,
        k=args.k,
        activation=args.activation,
        skip=args.skip,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        l0_coefficient=args.l0_coefficient,
        dead_tokens=args.dead_tokens,
        train_tokens=args.train_tokens,
        ctx_len=args.ctx_len,
        data=args.data,
        features=args.features,
        seed=args.seed,
    )
    result = train_transcoders(model, cfg, args.out, progress=not args.no_progress, report=_progress)
    print(result.table())
    print(json.dumps({"out": result.out, "seconds": result.seconds, "record_seconds": result.record_seconds}))
    return 0


def _quality(args: argparse.Namespace) -> int:
    from neuroscope.models.loading import load_model
    from neuroscope.transcoders.quality import QualityConfig, transcoder_quality

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    q = transcoder_quality(
        model,
        args.transcoders,
        QualityConfig(heldout_tokens=args.heldout_tokens, ce_contexts=args.ce_contexts, ctx_len=args.ctx_len),
        acts=args.acts,
    )
    print(q.table())
    text = json.dumps(q.to_dict(), indent=2)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-transcoders",
        help="per-layer (skip) transcoders MLP-in -> MLP-out for many layers from one recording pass (resumable)",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--layers", required=True, help="e.g. 0-29 or 3,5,7")
    p.add_argument("--out", required=True, help="folder: layer_{l}.safetensors + config.yaml (circuit-tracer)")
    p.add_argument("--tokens", type=int, default=250_000, help="training tokens recorded once for all layers")
    p.add_argument("--heldout-tokens", type=int, default=16_384)
    p.add_argument("--train-tokens", type=int, default=None, help="train each layer on the first N only")
    p.add_argument("--d-tc", type=int, default=4608, help="latents per transcoder")
    p.add_argument("--k", type=int, default=64, help="active latents per token (TopK)")
    p.add_argument("--activation", choices=["topk", "jumprelu"], default="topk")
    p.add_argument(
        "--skip", action=argparse.BooleanOptionalAction, default=True, help="linear skip term (default on)"
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--l0-coefficient", type=float, default=2e-3, help="JumpReLU sparsity weight")
    p.add_argument("--dead-tokens", type=int, default=25_000)
    p.add_argument("--ctx-len", type=int, default=128)
    p.add_argument("--data", default=None, help="corpus (default: the project's corpus in data/)")
    p.add_argument("--features", action="store_true", help="also compute feature stores (held-out split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_train)

    t = subparsers.add_parser("transcoders", help="transcoder tools: quality")
    tsub = t.add_subparsers(dest="transcoders_command", required=True)
    q = tsub.add_parser(
        "quality",
        help="per layer FVU/L0/dead on held-out text; whole model CE recovered, top-1, KL (with/without errors)",
    )
    q.add_argument("--model", required=True)
    q.add_argument("--transcoders", required=True)
    q.add_argument("--acts", default=None, help="held-out pairs (default: TRANSCODERS/acts/heldout)")
    q.add_argument("--heldout-tokens", type=int, default=16_384)
    q.add_argument("--ce-contexts", type=int, default=32, help="held-out contexts for the whole-model metrics")
    q.add_argument("--ctx-len", type=int, default=128)
    q.add_argument("--json", default=None, help="write the JSON report here")
    q.add_argument("--device", default=None)
    q.add_argument("--threads", type=int, default=None)
    q.set_defaults(func=_quality)
