"""``neuroscope sae-bench``: ``synthetic`` (ground-truth recovery on SAELens synthetic data) and, where
:mod:`neuroscope.sae.bench.real` is installed, ``real`` (downstream evaluation on the real model)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from pathlib import Path

from neuroscope.cli import set_threads


def _synthetic(args: argparse.Namespace) -> int:
    import torch

    from neuroscope.sae.bench.config import load_config
    from neuroscope.sae.bench.synthetic import run_synthetic

    set_threads(args.threads)
    cfg = load_config(args.config)
    changes = {}
    if args.l0s:
        changes["l0s"] = tuple(args.l0s)
    if args.tokens:
        changes["tokens"] = args.tokens
    if args.eval_tokens:
        changes["eval_tokens"] = args.eval_tokens
    if args.seed is not None:
        changes["seed"] = args.seed
    if changes:
        cfg = cfg.replace(**changes)  # validated again, before anything is generated
    load_before = os.getloadavg()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = run_synthetic(cfg, archs=args.archs, trainers=args.trainers, progress=args.progress, log=log)
    result.machine = {
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        # a shared machine: the load beside the speeds says how far to trust them
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=2))
    if args.figure:
        fig_path = Path(args.figure)
        fig_path.parent.mkdir(parents=True, exist_ok=True)
        result.figure().savefig(fig_path, dpi=120)
    best = result.best()
    summary = {
        "out": str(out),
        "true_l0": round(result.true_l0, 3),
        "best": None if best is None else {"trainer": best.trainer, "arch": best.arch, "mcc": best.mcc},
        "comparison": result.comparison(),
    }
    print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sae-bench", help="Benchmarks of SAE quality (synthetic ground truth; real model)")
    bench = p.add_subparsers(dest="bench", required=True)
    s = bench.add_parser(
        "synthetic",
        help="Train every architecture, ours and SAELens's, on one seeded synthetic draw and score recovery",
    )
    s.add_argument("--config", default="default", help="shipped config name (default, tiny) or a JSON file")
    s.add_argument("--archs", nargs="+", default=None, help="architectures (default: all registered)")
    s.add_argument(
        "--trainers",
        nargs="+",
        default=["neuroscope", "saelens"],
        choices=["neuroscope", "saelens"],
        help="which trainers run (SAELens only for the architectures it has)",
    )
    s.add_argument("--l0s", nargs="+", type=int, default=None, help="target L0s (default: the config's)")
    s.add_argument("--tokens", type=int, default=None, help="training tokens per run (default: the config's)")
    s.add_argument("--eval-tokens", type=int, default=None, help="held-out tokens (default: the config's)")
    s.add_argument(
        "--seed", type=int, default=None, help="seed of the model and the draws (default: the config's)"
    )
    s.add_argument("--out", required=True, help="result JSON")
    s.add_argument("--figure", default=None, help="MCC against L0 as a PNG")
    s.add_argument("--progress", action="store_true", help="show our trainer's progress bars")
    s.add_argument("--threads", type=int, default=None, help="torch threads")
    s.set_defaults(func=_synthetic)
    try:
        real = importlib.import_module("neuroscope.sae.bench.real")
    except ModuleNotFoundError as e:
        if e.name != "neuroscope.sae.bench.real":
            raise
        return
    real.register_real(bench)
