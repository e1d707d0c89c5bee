"""``neuroscope edit``: an edit family as a hooked edit, then a LoRA (closed form where exact, distilled
otherwise), exported as a PEFT adapter, checked in plain transformers + peft, with a manifest that says how
it was chosen, what it was measured to do and whether it meets its goals."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.cli import set_threads
from neuroscope.errors import InvalidConfigError, ResourceNotFoundError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

FAMILIES = ("ablate", "clamp", "gated", "heads")


def parse_goals(items: list[str] | None) -> dict[str, float] | None:
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, limit = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            out[key] = float(limit)
        except ValueError:
            raise InvalidConfigError(
                f"--goal takes KEY=LIMIT (e.g. clean.kl_base_to_lora=0.05), got {item!r}"
            ) from None
    return out


def load_saes(
    model: HookedModel, suite: str | None, saes: list[str] | None, layers: set[int]
) -> dict[int, SAE]:
    """The SAEs of ``layers``: from ``--sae`` folders (each read at its own hook) or a suite's ``L{n}``."""
    from neuroscope.edits.targets import parse_hook
    from neuroscope.sae.io import load_sae

    out: dict[int, SAE] = {}
    for given in saes or []:
        sae = load_sae(given)
        out[parse_hook(model, sae.cfg.hook_name)[0]] = sae
    for layer in sorted(layers - set(out)):
        if suite is None:
            raise InvalidConfigError(f"no SAE for layer {layer}: pass --suite DIR or --sae FOLDER for it")
        folder = Path(suite) / f"L{layer}"
        if not folder.is_dir():
            raise ResourceNotFoundError(f"the suite {suite} has no SAE folder L{layer}")
        out[layer] = load_sae(folder)
    return out


def _hooked(args: argparse.Namespace, model: HookedModel, data: dict[str, Any]) -> Any:
    from neuroscope.edits import families as fam
    from neuroscope.edits.gated import mean_difference
    from neuroscope.edits.heads import parse_heads
    from neuroscope.edits.multi import parse_layer_features

    if args.method == "heads":
        if not args.heads:
            raise InvalidConfigError("--method heads needs --heads L.H[@POS],...")
        ref = None
        if args.head_mode == "mean":  # every row's real tokens only: the shortest clean prompt's length
            n = int(data["quiet_train_mask"].sum(1).min())
            ref = data["quiet_train"][:, :n]
        return fam.head_edit(model, parse_heads(args.heads), args.head_mode, ref, args.rank, args.layers_back)
    pairs = parse_layer_features(args.features) if args.features else []
    if args.method in ("ablate", "clamp") and not pairs:
        raise InvalidConfigError(f"--method {args.method} needs --features L:ID,...")
    saes = load_saes(model, args.suite, args.sae, {l for l, _ in pairs})
    if args.method == "ablate":
        return fam.multi_feature_ablate(model, saes, pairs, args.rank)
    if args.method == "clamp":
        if (args.value is None) == (args.scale is None):
            raise InvalidConfigError("--method clamp needs exactly one of --value or --scale")
        return fam.multi_feature_clamp(model, saes, pairs, args.value, args.scale)
    gates = fam.feature_gates(saes, pairs, args.gate_mode)
    for layer in args.direction_layers or []:
        hook = f"blocks.{layer}.hook_{args.direction_site}"
        gates += fam.direction_gates([(hook, mean_difference(model, data, hook))], args.gate_mode)
    if not gates:
        raise InvalidConfigError("--method gated needs --features L:ID,... and/or --direction-layers L,...")
    if args.gate_threshold == "auto":
        return fam.gated_edit(
            model, gates, data["quiet_train"], data["quiet_train_mask"], args.gate_quantile, args.gate_margin
        )
    try:
        value = float(args.gate_threshold)
    except ValueError:
        raise InvalidConfigError(
            f"--gate-threshold is auto or a number, got {args.gate_threshold!r}"
        ) from None
    from neuroscope.edits.gated import GatedEdit

    fixed = [GatedEdit(g.hook, value, g.mode, g.direction, g.sae, g.feature) for g in gates]
    return fam.gated_edit(model, fixed)


def _miss(m: dict[str, Any]) -> str:
    if m["measured"] is None:
        return f"{m['goal']} (not measured)"
    return f"{m['goal']} ({m['measured']:.4g} > {m['limit']:g})"


def _edit(args: argparse.Namespace) -> int:
    from neuroscope.edits.distill import DistillConfig
    from neuroscope.edits.families import export_edit, realise
    from neuroscope.edits.prompts import prompt_data, read_sets
    from neuroscope.models.loading import load_model

    set_threads(args.threads)
    triggered, clean = read_sets(args.triggered, args.clean)
    model = load_model(args.model, device=args.device)
    data = prompt_data(model, triggered, clean, args.heldout_fraction, args.seed, args.max_len)
    hooked = _hooked(args, model, data)
    cfg = DistillConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        layers_back=args.layers_back,
        seed=args.seed,
        max_clean_kl=args.max_clean_kl,
    )
    lora = realise(model, hooked, data, args.rank, cfg, distil=True if args.distil else None)
    lora.info["prompts"] = {"triggered": str(args.triggered), "clean": str(args.clean)}
    out = export_edit(model, hooked, lora, args.out, data, parse_goals(args.goal), base=args.base)
    manifest = json.loads((out / "edit.json").read_text())
    print(json.dumps({"out": str(out), **manifest}, indent=2))
    if not manifest["meets_goals"]:
        missed = ", ".join(_miss(m) for m in manifest["misses"])
        print(f"neuroscope edit: the adapter does NOT meet its goals: {missed}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "edit",
        help="an edit family (several features, gated, heads) as a hooked edit and a LoRA, checked and exported",
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--method", choices=FAMILIES, required=True)
    p.add_argument("--distil", action="store_true", help="distil even where an exact closed form exists")
    p.add_argument("--suite", default=None, help="SAE suite folder (L<layer>/ per layer)")
    p.add_argument("--sae", action="append", help="an SAE folder (repeatable; read at its own hook)")
    p.add_argument("--features", default=None, help="LAYER:FEATURE pairs, e.g. 16:123,20:5")
    p.add_argument(
        "--value", type=float, default=None, help="clamp: the value a feature is set to where it fires"
    )
    p.add_argument(
        "--scale", type=float, default=None, help="clamp: multiply a feature by this where it fires"
    )
    p.add_argument(
        "--heads", default=None, help="heads: LAYER.HEAD[@POS], POS all|last|i+j, e.g. 3.1,4.2@last"
    )
    p.add_argument(
        "--head-mode", choices=["zero", "mean"], default="zero", help="mean: over the clean prompts"
    )
    p.add_argument(
        "--direction-layers",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=None,
        help="gated: gate the triggered-minus-clean mean difference at these layers",
    )
    p.add_argument("--direction-site", default="resid_post", choices=["resid_pre", "resid_mid", "resid_post"])
    p.add_argument("--gate-mode", choices=["zero", "clean", "excess"], default="excess")
    p.add_argument("--gate-threshold", default="auto", help="auto (from the clean prompts) or a number")
    p.add_argument(
        "--gate-quantile", type=float, default=1.0, help="auto: quantile of clean scores (1 = max)"
    )
    p.add_argument("--gate-margin", type=float, default=0.0, help="auto: added to the clean quantile")
    p.add_argument("--triggered", required=True, help="triggered prompts (txt/jsonl/json; prompt + response)")
    p.add_argument("--clean", required=True, help="clean prompts (txt/jsonl/json)")
    p.add_argument("--max-len", type=int, default=64, help="tokens kept per prompt")
    p.add_argument("--heldout-fraction", type=float, default=0.25)
    p.add_argument("--rank", type=int, default=8, help="LoRA rank, 4..16")
    p.add_argument("--steps", type=int, default=120, help="distillation steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--layers-back", type=int, default=4, help="distilled LoRA: layers up to the edit's last")
    p.add_argument("--max-clean-kl", type=float, default=0.1, help="stop if held-out clean KL exceeds this")
    p.add_argument("--goal", action="append", help="KEY=LIMIT upper bound on a measured figure (repeatable)")
    p.add_argument("--base", default=None, help="the model as a plain HF folder for the peft check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output adapter folder (PEFT layout + edit.json)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_edit)
