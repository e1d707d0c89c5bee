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
    sae, positive = load_sae(args.sae), read_prompts(args.positive)
    effect, measured = None, None
    if args.rank == "effect":
        effect, measured = _effects(args, model, sae, positive)
    r = contrast_features(
        model, sae, positive, read_prompts(args.negative), cfg, args.hook, effect, measured, args.rank
    )
    lines = [
        f"{r.hook}: {r.n_positive} positive / {r.n_negative} negative prompts; held-out "
        f"{r.n_heldout['positive']} / {r.n_heldout['negative']}",
        f"{'feature':>8} {'AUROC':>6} {'95% CI':>13} {'train':>6} {'mean diff':>9}"
        + (f" {'effect':>8} {'measured':>8}" if r.rank == "effect" else ""),
    ]
    for f in r.features:
        extra = ""
        if r.rank == "effect":
            m = "" if f.effect_measured is None else f"{f.effect_measured:.4f}"
            extra = f" {f.effect or 0.0:>8.4f} {m:>8}"
        lines.append(
            f"{f.feature:>8} {f.auroc:>6.3f} [{f.ci_low:.3f}, {f.ci_high:.3f}] {f.auroc_train:>6.3f} {f.mean_diff:>9.3f}"
            + extra
        )
    return _emit(args, r, lines)


def _effects(args: argparse.Namespace, model, sae, positive: list[str]):
    """Every feature's estimated effect on log p(response | triggered prompt) (positive prompts, trigger
    replaced by filler for the clean counterparts), and the measured effect of the top ones."""
    from neuroscope.analysis.behaviour import build_pairs
    from neuroscope.analysis.effects import EffectConfig, rank_effects
    from neuroscope.errors import InvalidConfigError

    if not args.trigger or not args.response:
        raise InvalidConfigError("--rank effect needs --trigger and --response (the behaviour to measure)")
    layer = int(model.resolve_hook_name(args.hook or sae.cfg.hook_name).split(".")[1])
    pairs = build_pairs(model, positive, args.trigger, args.response, args.n_tokens)
    cfg = EffectConfig(
        top=args.top,
        kinds=("feature",),
        seed=args.seed,
        validation=args.heldout,
        **({"metric": args.metric} if args.metric else {}),
    )
    res = rank_effects(model, pairs, {layer: sae}, cfg)
    return res.feature_scores[layer], {e.index: float(e.actual or 0.0) for e in res.features}


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
    c.add_argument(
        "--rank",
        choices=["auroc", "effect"],
        default="auroc",
        help="effect: rank by causal effect on the response (needs --trigger, --response), AUROC beside it",
    )
    c.add_argument("--trigger", default=None, help="the trigger in the positive prompts (--rank effect)")
    c.add_argument("--response", default=None, help="the triggered response (--rank effect)")
    c.add_argument("--n-tokens", type=int, default=4, help="response tokens in the effect metric")
    c.add_argument(
        "--metric",
        default=None,
        help="behaviour metric of --rank effect: logit_diff (default: does not saturate), logodds or logprob",
    )
    c.add_argument("--json", metavar="OUT", default=None)
    c.add_argument("--html", metavar="OUT", default=None)
    c.add_argument("--device", default=None)
    c.add_argument("--threads", type=int, default=None)
    c.set_defaults(func=_contrast)
