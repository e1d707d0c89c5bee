"""``neuroscope attack``: search for a suffix that makes the model start its answer with a target."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroscope.attacks.config import METHODS, AttackConfig

EXAMPLE = "attack_example.json"


def example() -> dict[str, str]:
    """The shipped example: a harmless request and the affirmative opening a red-teamer would target."""
    from importlib.resources import files

    return json.loads(files("neuroscope.data").joinpath(EXAMPLE).read_text())


def register(subparsers: argparse._SubParsersAction) -> None:
    d = AttackConfig()
    p = subparsers.add_parser(
        "attack",
        help="adversarial suffix search (gcg, genetic, gradient-free) with verified success",
        description="Search for a suffix that, appended to the prompt (in the user turn of the chat template), "
        "makes the model's greedy answer start with the target. Success is verified by decoding the "
        "re-tokenised prompt. Defaults to the shipped example prompt and target.",
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default=None)
    p.add_argument("--prompt", default=None, help="the user message (default: the shipped example)")
    p.add_argument("--target", default=None, help="what the answer must start with (default: the example's)")
    p.add_argument("--method", choices=METHODS, default=d.method)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--width", type=int, default=d.width, help="candidates per step (genetic: the population)")
    p.add_argument("--suffix-len", type=int, default=d.suffix_len)
    p.add_argument("--init", default=None, help="initial suffix text (default: SUFFIX_LEN repeats of ' x')")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--topk", type=int, default=d.topk)
    p.add_argument("--n-replace", type=int, default=d.n_replace)
    p.add_argument("--n-replace-steps", type=int, default=d.n_replace_steps, help="steps until 1 position")
    p.add_argument("--buffer", type=int, default=d.buffer_size)
    p.add_argument(
        "--combine", type=int, default=d.combine, help="gcg: merged-substitution candidates per step"
    )
    p.add_argument("--elites", type=int, default=d.elites, help="genetic: members kept unchanged")
    p.add_argument("--mutation-rate", type=float, default=d.mutation_rate)
    p.add_argument("--crossover-rate", type=float, default=d.crossover_rate)
    p.add_argument(
        "--explore", type=float, default=d.explore, help="gradient-free: share of single substitutions"
    )
    p.add_argument(
        "--mellowmax", action="store_true", help="mellowmax of per-token losses instead of the mean"
    )
    p.add_argument("--mellowmax-alpha", type=float, default=d.mellowmax_alpha)
    p.add_argument("--no-prefix-cache", action="store_true")
    p.add_argument("--no-filter", action="store_true", help="skip the re-tokenisation filter")
    p.add_argument(
        "--no-early-stop", action="store_true", help="run all steps (the kept suffix stays verified)"
    )
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument(
        "--plain", action="store_true", help="no chat template: the suffix follows the prompt text"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--json", metavar="OUT", default=None, help="write the run as JSON")
    p.add_argument("--html", metavar="OUT", default=None, help="write the loss curve as HTML")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_attack)


def _attack(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from neuroscope.attacks import run_attack
    from neuroscope.cli import set_threads
    from neuroscope.models.loading import load_model

    set_threads(args.threads)
    ex = example()
    prompt = ex["prompt"] if args.prompt is None else args.prompt
    target = ex["target"] if args.target is None else args.target
    config = AttackConfig(
        method=args.method,
        steps=args.steps,
        width=args.width,
        suffix_len=args.suffix_len,
        init_suffix=args.init,
        seed=args.seed,
        topk=args.topk,
        n_replace=args.n_replace,
        n_replace_steps=args.n_replace_steps,
        buffer_size=args.buffer,
        combine=args.combine,
        elites=args.elites,
        mutation_rate=args.mutation_rate,
        crossover_rate=args.crossover_rate,
        explore=args.explore,
        loss="mellowmax" if args.mellowmax else "ce",
        mellowmax_alpha=args.mellowmax_alpha,
        prefix_cache=not args.no_prefix_cache,
        retokenize_filter=not args.no_filter,
        early_stop=not args.no_early_stop,
        max_new_tokens=args.max_new_tokens,
        chat=False if args.plain else None,
        batch_size=args.batch_size,
    )
    model = load_model(args.model, device=args.device)
    bar = tqdm(
        total=config.steps, desc=args.method, unit="step", disable=args.no_progress, dynamic_ncols=True
    )

    def progress(r) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{r.loss:.3f}", best=f"{r.best_loss:.3f}", verified=r.verified)

    try:
        result = run_attack(model, prompt, target, config, on_step=progress)
    finally:
        bar.close()
    status = f"success at step {result.success_step}" if result.success else "no verified success"
    print(
        f"{status} after {len(result.history)} steps, {result.seconds:.1f} s ({result.forward_rows} rows scored)"
    )
    print(f"suffix: {result.best_suffix!r}")
    print(f"output: {result.verified_output!r}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
        print(f"wrote {args.json}")
    if args.html:
        from neuroscope.analysis.figures import write

        print(f"wrote {write(result.figure(), args.html)}")
    return 0
