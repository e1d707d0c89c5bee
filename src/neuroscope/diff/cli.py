"""``neuroscope diff --base BASE --model TUNED [--prompts FILE] [--sae-suite DIR] --out DIR``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroscope.cli import set_threads


def _features_from(path: str) -> list[tuple[int, int]]:
    """(layer, feature) pairs from an effects JSON (``case-study localise``'s, or a ``rank_effects`` result:
    ``features`` with layer/index) or a list of [layer, feature]."""
    from neuroscope.errors import ResourceNotFoundError, TaskFileError

    p = Path(path)
    if not p.is_file():
        raise ResourceNotFoundError(f"Features file {p} does not exist.")
    data = json.loads(p.read_text())
    if isinstance(data, dict) and isinstance(data.get("effects"), dict):  # case-study localise's effects.json
        data = data["effects"]
    rows = data.get("features", []) if isinstance(data, dict) else data
    try:
        return [
            (int(r["layer"]), int(r["index"] if "index" in r else r["feature"]))
            if isinstance(r, dict)
            else (int(r[0]), int(r[1]))
            for r in rows
        ]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise TaskFileError(
            f"{p}: features must be objects with layer and index/feature, or [layer, feature]"
        ) from e


def _diff(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from neuroscope.analysis.figures import write
    from neuroscope.diff import DiffConfig, check_comparable, diff_models, read_prompt_sets
    from neuroscope.organisms.generation import load_checked
    from neuroscope.sae.suite import SAESuite

    set_threads(args.threads)
    prompts = read_prompt_sets(args.prompts) if args.prompts else None  # a bad file fails before any load
    feats = _features_from(args.features) if args.features else []
    tuned = load_checked(args.model, device=args.device)
    base = load_checked(args.base, device=args.device)
    check_comparable(base, tuned)
    saes = {}
    if args.sae_suite:
        suite = SAESuite.load(args.sae_suite)
        saes = {l: suite.sae(l) for l in suite.layers}
    cfg = DiffConfig(k=args.k, top=args.top, batch_size=args.batch_size)
    r = diff_models(base, tuned, prompts, saes, feats, cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diff.json").write_text(json.dumps(r.to_dict(), indent=1, default=str))
    write(r.figure(), out / "weights.html")
    for kind in r.outputs:
        write(r.head_figure(kind), out / f"heads_{kind}.html")
    dirs = {
        m.name: m.u.contiguous() for m in r.modules if m.writes_residual and m.u is not None and m.u.numel()
    }
    if dirs:
        save_file(dirs, str(out / "directions.safetensors"))
    print(f"{r.tuned} vs {r.base}: {len(r.modules)} linear modules, {r.seconds:.1f} s")
    print(f"{'module':<40} {'‖ΔW‖':>8} {'rel':>7} {'top-k energy':>12} {'eff. rank':>9}")
    for m in r.modules[: args.top]:
        print(
            f"{m.name:<40} {m.norm:>8.4f} {m.rel_norm:>7.4f} {m.energy_topk:>12.3f} {m.effective_rank:>9.2f}"
        )
    for kind, heads in r.top_heads.items():
        print(
            f"most changed heads on {kind} prompts: "
            + ", ".join(f"L{h['layer']}H{h['head']} {h['change']:.3f}" for h in heads[:5])
        )
    for a in r.alignment:
        print(
            f"feature L{a['layer']}/{a['feature']}: |cos| {a['cosine']:.3f} with {a['module']} direction {a['direction']}"
        )
    print(f"wrote {out}/diff.json, weights.html" + (", heads_*.html" if r.outputs else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "diff", help="a tuned model against its base: ΔW spectra, changed heads/MLPs/features"
    )
    p.add_argument("--base", required=True, help="the base model spec (what TUNED was fine-tuned from)")
    p.add_argument("--model", required=True, help="the tuned model spec")
    p.add_argument(
        "--prompts",
        default=None,
        help='JSON {"triggered": [...], "clean": [...]} or JSONL {"kind": ..., "text": ...}',
    )
    p.add_argument("--sae-suite", default=None, help="SAE suite folder: changed features per layer")
    p.add_argument(
        "--features",
        default=None,
        help="effects JSON (or [[layer, feature], ...]) to align with ΔW's directions",
    )
    p.add_argument("--out", required=True, help="output folder (diff.json, weights.html, heads_*.html)")
    p.add_argument("--k", type=int, default=8, help="top singular values/directions per module")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)")
    p.set_defaults(func=_diff)
