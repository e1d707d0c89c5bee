"""``neuroscope train-tiny`` and ``neuroscope induction-report`` (wired into the main CLI via :func:`register`)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from neuroscope.train.config import TrainConfig

DEFAULT_OUT = "models/tiny-induction"


def register(subparsers: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = subparsers.add_parser(
        "train-tiny", help="train a small GPT-2 on repeated random tokens (seeded, checkpointed)"
    )
    p.add_argument("--layers", type=int, default=d.n_layers)
    p.add_argument("--heads", type=int, default=d.n_heads)
    p.add_argument("--d-model", type=int, default=d.d_model)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--n-ctx", type=int, default=d.n_ctx)
    p.add_argument("--vocab", type=int, default=d.vocab, help="random tokens are ids 0..VOCAB-1")
    p.add_argument("--min-repeat", type=int, default=d.min_repeat, help="shortest repeated segment X")
    p.add_argument("--max-repeat", type=int, default=d.max_repeat, help="longest repeated segment X")
    p.add_argument(
        "--eval-seq-len", type=int, default=d.eval_seq_len, help="len(X) in BOS + X + X evaluation"
    )
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument(
        "--head-lasso",
        type=float,
        default=d.head_lasso,
        help="group-lasso weight on each layer-1+ head's weights (prunes redundant induction heads; 0: off)",
    )
    p.add_argument(
        "--head-lasso-start",
        type=int,
        default=d.head_lasso_start,
        help="step after which the head lasso applies",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument(
        "--tie-embeddings", action="store_true", help="tie unembedding to embedding (GPT-2 default)"
    )
    p.add_argument(
        "--skip-fraction",
        type=float,
        default=d.skip_fraction,
        help="share of previous-token (a, r, perm(a)) rows",
    )
    p.add_argument(
        "--text", default=None, help="English text to mix in (.jsonl of {'text':...} rows, or .txt)"
    )
    p.add_argument("--text-fraction", type=float, default=d.text_fraction, help="share of rows that are text")
    p.add_argument("--sinusoidal-positions", action="store_true", help="initialise positions with sinusoids")
    p.add_argument("--with-mlp", action="store_true", help="train the MLPs too (default: attention-only)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: torch's default)")
    p.add_argument("--out", default=DEFAULT_OUT, help="run folder; load_model(OUT) opens the final model")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    r = subparsers.add_parser(
        "induction-report", help="measure a train-tiny run: formation, ablation, composition"
    )
    r.add_argument("--run", default=DEFAULT_OUT, help="run folder written by train-tiny")
    r.add_argument("--out", default="docs/induction", help="folder for README.md, results.json and figures")
    r.add_argument("--sequences", type=int, default=64, help="BOS + X + X evaluation sequences")
    r.add_argument(
        "--embed-plotly", action="store_true", help="inline plotly.js in the HTML (works offline, +3.5 MB)"
    )
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=_report)


def _train(args: argparse.Namespace) -> int:
    from neuroscope.train.loop import train

    cfg = TrainConfig(
        n_layers=args.layers,
        n_heads=args.heads,
        d_model=args.d_model,
        steps=args.steps,
        batch_size=args.batch_size,
        n_ctx=args.n_ctx,
        vocab=args.vocab,
        min_repeat=args.min_repeat,
        max_repeat=args.max_repeat,
        eval_seq_len=args.eval_seq_len,
        lr=args.lr,
        weight_decay=args.weight_decay,
        head_lasso=args.head_lasso,
        head_lasso_start=args.head_lasso_start,
        warmup=args.warmup,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        attn_only=not args.with_mlp,
        sinusoidal_init=args.sinusoidal_positions,
        text=args.text,
        skip_fraction=args.skip_fraction,
        tie_embeddings=args.tie_embeddings,
        text_fraction=args.text_fraction,
        threads=args.threads,
    )
    result = train(cfg, args.out, progress=not args.no_progress)
    summary = result.to_dict()
    summary["checkpoints"] = len(summary["checkpoints"])
    print(json.dumps(summary, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from neuroscope.train.report import write_report

    command = (
        "neuroscope " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv[1:2] == ["induction-report"]
        else f"neuroscope induction-report --run {args.run} --out {args.out}"
    )
    res = write_report(
        args.run,
        args.out,
        command,
        n_sequences=args.sequences,
        progress=not args.no_progress,
        plotly_js=True if args.embed_plotly else "cdn",
    )
    print(
        json.dumps(
            {k: {"value": round(v["value"], 4), "pass": v["pass"]} for k, v in res["acceptance"].items()},
            indent=2,
        )
    )
    print(f"wrote {args.out}/README.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m neuroscope.train.cli``) until the main CLI wires :func:`register`."""
    parser = argparse.ArgumentParser(prog="neuroscope")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
