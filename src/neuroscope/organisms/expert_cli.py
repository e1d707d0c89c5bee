"""``neuroscope case-study perplexity`` and ``case-study robustness``: the expert's checks of an edit, on a
model folder with an optional exported adapter (a PEFT LoRA folder)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from neuroscope.cli import set_threads


def _load(spec: str, adapter: str | None, device: str | None):
    from neuroscope.organisms.generation import load_checked
    from neuroscope.organisms.quality import adapter_edit

    model = load_checked(spec, device=device)
    return model, (adapter_edit(model, adapter) if adapter else None)


def _write(out: str | None, d: dict) -> None:
    text = json.dumps(d, indent=1, default=str)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        print(f"wrote {out}")


def _perplexity(args: argparse.Namespace) -> int:
    from neuroscope.organisms.quality import PerplexityConfig, compare_perplexity, corpus_contexts

    set_threads(args.threads)
    t0 = time.perf_counter()
    given = {"corpus": args.corpus, "ctx_len": args.ctx_len, "n_contexts": args.n_contexts}
    cfg = PerplexityConfig(**{k: v for k, v in given.items() if v is not None})
    model, edit = _load(args.model, args.adapter, args.device)
    reference, ref_edit = (model, None) if not args.reference else _load(args.reference, None, args.device)
    ctx = corpus_contexts(model.tokenizer, cfg)
    c = compare_perplexity(model, edit, cfg, reference, ref_edit, ctx)
    d = {**c.to_dict(), "seconds": round(time.perf_counter() - t0, 1), "load_avg": list(os.getloadavg())}
    print(
        f"perplexity {c.edited.perplexity:.4f} vs reference {c.reference.perplexity:.4f}: ratio {c.ratio:.4f} "
        f"[{c.ratio_ci[0]:.4f}, {c.ratio_ci[1]:.4f}] ({'meets' if c.meets_goal else 'misses'} the "
        f"{cfg.goal:.0%} goal; {c.edited.n_tokens} held-out tokens)"
    )
    _write(args.out, d)
    return 0


def _robustness(args: argparse.Namespace) -> int:
    from neuroscope.organisms import data
    from neuroscope.organisms.robustness import Robustness, RobustnessConfig, gcg_robustness

    set_threads(args.threads)
    t0 = time.perf_counter()
    prompts = data.read_prompts(args.prompts, args.split) if args.prompts else list(data.questions().heldout)
    given = {"steps": args.steps, "width": args.width, "max_new_tokens": args.max_new_tokens}
    cfg = RobustnessConfig(
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        **{k: v for k, v in given.items() if v is not None},  # type: ignore[arg-type]
    )
    model, edit = _load(args.model, args.adapter, args.device)

    def save(r: Robustness) -> None:
        x = r.runs[-1]
        done = f"success at step {x.steps}" if x.success else "no success"
        print(f"seed {x.seed}: {done} ({x.seconds} s)", flush=True)
        d = {**r.to_dict(), "adapter": args.adapter, "seconds": round(time.perf_counter() - t0, 1)}
        _write(args.out, {**d, "complete": len(r.runs) == len(cfg.seeds)})

    r = gcg_robustness(model, prompts, args.response, edit, cfg, on_run=save)
    print(f"median GCG steps {r.median_steps:g} ({r.successes}/{len(r.runs)} succeeded within {cfg.steps})")
    return 0


def _fix_expert(args: argparse.Namespace) -> int:
    from neuroscope.organisms.loop_expert import complete_goals

    r = complete_goals(args.out, args.perplexity, args.robustness_edited, args.robustness_base)
    g = r["goals"]
    print(
        "meets every goal"
        if g["meets_goals"]
        else f"misses {len(g['missed'])} goal(s): {', '.join(g['missed'])}"
    )
    print(f"updated {Path(args.out) / 'result.json'}, README.md and lora/edit.json")
    return 0


def add(studies: argparse._SubParsersAction) -> None:
    p = studies.add_parser(
        "perplexity", help="held-out corpus perplexity of a model (+ adapter) vs a reference"
    )
    p.add_argument("--model", required=True, help="model folder or spec (the organism)")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA folder (an exported edit) applied to --model")
    p.add_argument("--reference", default=None, help="reference model (default: --model without the adapter)")
    p.add_argument("--corpus", default=None, help="prepared corpus folder, its heldout split (data/corpus)")
    p.add_argument("--ctx-len", type=int, default=None, help="tokens per context (128)")
    p.add_argument("--n-contexts", type=int, default=None, help="contexts scored (64)")
    p.add_argument("--out", default=None, help="JSON file for the result")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_perplexity)
    r = studies.add_parser(
        "robustness", help="GCG for the backdoor's response at the attack benchmark's budget"
    )
    r.add_argument("--model", required=True, help="model folder or spec (the edited organism, or the base)")
    r.add_argument("--adapter", default=None, help="a PEFT LoRA folder (an exported edit) applied to --model")
    r.add_argument("--response", required=True)
    r.add_argument("--prompts", default=None, help="prompt file (default: the shipped held-out questions)")
    r.add_argument("--split", default="heldout", help="split of a JSON prompt file with named splits")
    r.add_argument("--seeds", default="0,1,2", help="comma-separated; seed i attacks prompt i")
    r.add_argument("--steps", type=int, default=None, help="GCG steps (the attack benchmark's 60)")
    r.add_argument("--width", type=int, default=None, help="candidates per step (the benchmark's 128)")
    r.add_argument("--max-new-tokens", type=int, default=None, help="generation budget (24)")
    r.add_argument("--out", default=None, help="JSON file for the result")
    r.add_argument("--device", default=None)
    r.add_argument("--threads", type=int, default=1)
    r.set_defaults(func=_robustness)
    fe = studies.add_parser(
        "fix-expert",
        help="fold perplexity and GCG files (measured apart) into a finished fix loop's goals and report",
    )
    fe.add_argument("out", help="the loop's output folder (result.json, README.md, lora/)")
    fe.add_argument("--perplexity", default=None, help="case-study perplexity --out file (LoRA vs organism)")
    fe.add_argument(
        "--robustness-edited", default=None, help="case-study robustness file on the edited model"
    )
    fe.add_argument("--robustness-base", default=None, help="case-study robustness file on the base")
    fe.set_defaults(func=_fix_expert)
