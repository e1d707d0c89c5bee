"""``neuroscope features contrast``: which SAE features separate two prompt sets."""

from __future__ import annotations

import argparse

from neuroscope.cli import set_threads


def _contrast(args: argparse.Namespace) -> int:
    from neuroscope.analysis.cli import _emit
    from neuroscope.models.loading import load_model
    from neuroscope.sae.contrast import ContrastConfig, contrast_features, read_prompts
    from neuroscope.sae.io import load_sae

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    cfg = ContrastConfig(heldout_fraction=args.heldout, n_boot=args.boot, top=args.top, seed=args.seed)
    r = contrast_features(
        model, load_sae(args.sae), read_prompts(args.positive), read_prompts(args.negative), cfg, args.hook
    )
    lines = [
        f"{r.hook}: {r.n_positive} positive / {r.n_negative} negative prompts; held-out "
        f"{r.n_heldout['positive']} / {r.n_heldout['negative']}",
        f"{'feature':>8} {'AUROC':>6} {'95% CI':>13} {'train':>6} {'mean diff':>9}",
    ]
    for f in r.features:
        lines.append(
            f"{f.feature:>8} {f.auroc:>6.3f} [{f.ci_low:.3f}, {f.ci_high:.3f}] {f.auroc_train:>6.3f} {f.mean_diff:>9.3f}"
        )
    return _emit(args, r, lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("features", help="SAE feature analyses (contrast)")
    sub = p.add_subparsers(dest="features_command", required=True)
    c = sub.add_parser("contrast", help="features separating two prompt sets (held-out AUROC, bootstrap CI)")
    c.add_argument("--model", default="smollm2-135m")
    c.add_argument("--sae", required=True)
    c.add_argument("--positive", required=True, help="prompts, one per line (or .json list / .jsonl text)")
    c.add_argument("--negative", required=True)
    c.add_argument("--hook", default=None)
    c.add_argument("--heldout", type=float, default=0.3, help="held-out fraction of each set")
    c.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    c.add_argument("--top", type=int, default=20)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", metavar="OUT", default=None)
    c.add_argument("--html", metavar="OUT", default=None)
    c.add_argument("--device", default=None)
    c.add_argument("--threads", type=int, default=None)
    c.set_defaults(func=_contrast)
