"""``neuroscope case-study fix``: the automatic find-and-fix loop on a backdoored organism."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from neuroscope.cli import set_threads
from neuroscope.organisms.localise_cli import add_organism_flags
from neuroscope.organisms.loop_families import FAMILIES

SPLITS = ("train", "validation", "heldout")


def read_split_prompts(path: str):
    """Questions of a JSON file with ``train``, ``validation`` and ``heldout`` lists; a missing or empty one
    is named."""
    from neuroscope.errors import InvalidConfigError, PromptSetKindMissingError, ResourceNotFoundError
    from neuroscope.organisms.backdoor import BackdoorPrompts

    p = Path(path)
    if not p.is_file():
        raise ResourceNotFoundError(f"Prompt file {str(p)!r} does not exist (or is not a file).")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InvalidConfigError(f"Prompt file {str(p)!r} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise InvalidConfigError(f"{p}: give a JSON object with lists under {', '.join(SPLITS)}")
    missing = [s for s in SPLITS if not [x for x in d.get(s) or [] if isinstance(x, str) and x.strip()]]
    if missing:
        raise PromptSetKindMissingError(
            f"The prompt file {p} has no {' and no '.join(missing)} prompts: the loop ranks on train, chooses "
            f"on validation and measures on heldout (give a non-empty list under each of {', '.join(SPLITS)})."
        )
    return BackdoorPrompts(*([x.strip() for x in d[s] if isinstance(x, str) and x.strip()] for s in SPLITS))


def previous_rows(path: str) -> dict[str, dict]:
    """An earlier case study's edit (its primary, e.g. the single-feature ablation) and its baselines as
    rows of the table, marked with their source and held-out size."""
    prev = json.loads(Path(path).read_text())
    n = (prev.get("n_prompts") or {}).get("heldout")
    keys = ("clean_agreement", "clean_kl", "false_trigger_rate")
    rows = {
        f"previous {prev.get('primary') or 'edit'}": {
            "asr": prev.get("asr_after"),
            "asr_ci": prev.get("asr_after_ci"),
            **{k: prev.get(k) for k in keys},
            "feature": prev.get("feature"),
        }
    }
    for name, b in (prev.get("baselines") or {}).items():
        rows[f"previous {name}"] = {
            "asr": b.get("asr"),
            "asr_ci": b.get("asr_ci"),
            **{k: b.get(k) for k in keys},
        }
    for r in rows.values():
        r.update({"source": path, "n_heldout_questions": n})
    return rows


def _ints(text: str | None) -> tuple[int, ...] | None:
    from neuroscope.errors import InvalidConfigError

    if text is None or text == "":
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidConfigError(f"expected comma-separated integers, got {text!r}") from None


def _fix(args: argparse.Namespace) -> int:
    import time

    from neuroscope.edits.distill import DistillConfig
    from neuroscope.errors import DistillationFailedError
    from neuroscope.organisms import loop, loop_report
    from neuroscope.organisms.evaluate import EvalConfig
    from neuroscope.organisms.loop_families import CandidateConfig

    t_start = time.perf_counter()
    set_threads(args.threads)
    cfg = loop.LoopConfig(
        n_train=args.n_train,
        n_validation=args.n_validation,
        n_heldout=args.n_heldout,
        top=args.top,
        candidates=CandidateConfig(
            feature_counts=_ints(args.feature_counts) or (),
            head_counts=_ints(args.head_counts) or (),
            direction_layers=_ints(args.direction_layers),
            delta_w_modules=args.delta_w_modules,
            knockout_layers=_ints(args.knockout_layers),
            knockout_method=args.knockout_method,
            rank=args.rank,
            families=tuple(f for f in args.families.split(",") if f),
        ),
        max_clean_kl=args.max_clean_kl,
        combine=not args.no_combine,
        trace=not args.no_trace,
        distill=DistillConfig(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_clean_kl=args.distil_max_clean_kl
        ),
        eval=EvalConfig(max_new_tokens=args.max_new_tokens, near_miss=not args.no_near_miss, seed=args.seed),
        answer_tokens=args.answer_tokens,
        seed=args.seed,
    )
    prompts = read_split_prompts(args.prompts) if args.prompts else None
    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731
    saes = {}
    extra: dict[str, Any] = {}
    if args.previous:
        extra["baselines"] = previous_rows(args.previous)
    commands = args.commands or ["neuroscope " + " ".join(shlex.quote(a) for a in sys.argv[1:])]
    extra["commands"] = commands
    model = None
    if args.sae_suite:
        from neuroscope.organisms.generation import load_checked
        from neuroscope.sae.suite import SAESuite

        model = load_checked(args.model)
        suite = SAESuite.load(args.sae_suite, model)
        saes = {l: suite.sae(l, model) for l in suite.layers}
    try:
        r = loop.fix_backdoor(
            args.model,
            args.trigger,
            args.response,
            args.out,
            args.base,
            saes,
            prompts,
            cfg,
            say,
            model,
            extra,
            args.prior_seconds + time.perf_counter() - t_start,
        ).to_dict()
    except DistillationFailedError as e:
        print(f"error: {e}", file=sys.stderr)
        print(json.dumps(e.figures, indent=1, default=str), file=sys.stderr)
        rpath = Path(args.out) / "result.json"
        if rpath.is_file():
            loop_report.write(args.out, json.loads(rpath.read_text()), commands)
        return 3
    loop_report.write(args.out, r, commands)
    print(
        f"chosen: {r['chosen']['name']} ({r['chosen_family']}); exported LoRA on held-out prompts: attack success "
        f"{r['asr_after']:.1%} (before {r['asr_before']:.1%}), false triggers {r['false_trigger_rate']:.1%}, "
        f"clean agreement {r['clean_agreement']:.3f}, KL {r['clean_kl']:.4f}; loop {r['seconds']['loop']} s"
    )
    if not r["meets_goals"]:
        print("goals missed: " + ", ".join(r["goals"]["missed"]), file=sys.stderr)
    print(f"wrote {args.out}/result.json, {args.out}/README.md, {args.out}/lora/")
    return 0


def add(studies: argparse._SubParsersAction) -> None:
    fx = studies.add_parser(
        "fix",
        help="the automatic loop: localise, edit families, choose on validation, distil, evaluate the LoRA",
    )
    add_organism_flags(fx, out_help="output folder (result.json, README.md, lora/, localise/)")
    fx.add_argument("--base", default=None, help="the base model: adds the ΔW-direction gate family")
    fx.add_argument("--sae-suite", default=None, help="SAE suite folder: the features families")
    fx.add_argument("--prompts", default=None, help="JSON with train/validation/heldout question lists")
    fx.add_argument("--n-train", type=int, default=48)
    fx.add_argument("--n-validation", type=int, default=24)
    fx.add_argument("--n-heldout", type=int, default=40)
    fx.add_argument("--top", type=int, default=8, help="units per kind validated by localisation")
    fx.add_argument("--families", default=",".join(FAMILIES), help="edit families to try")
    fx.add_argument("--no-trace", action="store_true", help="skip the trigger trace (layer x position)")
    fx.add_argument("--no-combine", action="store_true", help="do not try the best two families together")
    fx.add_argument("--feature-counts", default="3,8", help="top-N features per features candidate")
    fx.add_argument("--head-counts", default="3,8", help="top-N heads per heads candidate")
    fx.add_argument(
        "--direction-layers", default=None, help="layers of the gated direction (default: every 4th)"
    )
    fx.add_argument("--delta-w-modules", type=int, default=6, help="ΔW writers gated (with --base)")
    fx.add_argument(
        "--knockout-layers", default=None, help="detector layers of the attention knockout (default: early)"
    )
    fx.add_argument(
        "--knockout-method", choices=("mean", "probe"), default="mean", help="the knockout's detector"
    )
    fx.add_argument(
        "--max-clean-kl", type=float, default=0.05, help="the choice's clean-KL bound (validation)"
    )
    fx.add_argument("--rank", type=int, default=8, help="LoRA rank (4..16)")
    fx.add_argument("--steps", type=int, default=80, help="distillation steps")
    fx.add_argument("--batch-size", type=int, default=8, help="distillation batch")
    fx.add_argument("--lr", type=float, default=2e-3)
    fx.add_argument("--distil-max-clean-kl", type=float, default=0.1, help="the distillation's stop")
    fx.add_argument("--max-new-tokens", type=int, default=24)
    fx.add_argument("--answer-tokens", type=int, default=16)
    fx.add_argument("--no-near-miss", action="store_true", help="skip near-miss triggers (held-out)")
    fx.add_argument(
        "--previous", default=None, help="an earlier study's result.json: its edit as a baseline row"
    )
    fx.add_argument("--prior-seconds", type=float, default=0.0, help="loop time spent before (run.sh)")
    fx.add_argument("--seed", type=int, default=0)
    fx.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)")
    fx.add_argument("--commands", nargs="*", default=None, help="commands to list in the report")
    fx.set_defaults(func=_fix)
