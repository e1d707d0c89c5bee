"""``neuroscope lora-patch``: build a LoRA edit for SAE features and save it as a PEFT adapter folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroscope.cli import set_threads
from neuroscope.errors import InvalidConfigError, ResourceNotFoundError


def parse_features(text: str) -> list[int]:
    try:
        feats = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise InvalidConfigError(f"--features takes comma-separated integers, got {text!r}") from None
    if not feats:
        raise InvalidConfigError("--features needs at least one feature id")
    return feats


def default_data(data: str | None) -> str:
    from neuroscope.record.datasets import CORPUS_FILE, DEFAULT_CORPUS_DIR

    if data:
        return data
    if (Path(DEFAULT_CORPUS_DIR) / CORPUS_FILE).exists():
        return DEFAULT_CORPUS_DIR
    raise ResourceNotFoundError(
        f"No text to measure (and distil) the edit on: pass --data FILE|FOLDER, or prepare the default corpus "
        f"in {DEFAULT_CORPUS_DIR} with `neuroscope corpus prepare`."
    )


def _lora_patch(args: argparse.Namespace) -> int:
    from neuroscope.edits.build import build_edit, corpus_contexts
    from neuroscope.edits.distill import DistillConfig
    from neuroscope.models.loading import load_model
    from neuroscope.sae.io import load_sae

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae)
    contexts = corpus_contexts(model, default_data(args.data), args.contexts, args.ctx_len)
    cfg = DistillConfig(steps=args.steps, lr=args.lr, layers_back=args.layers_back, seed=args.seed)
    edit = build_edit(
        model,
        sae,
        parse_features(args.features),
        method=args.method,
        value=args.value,
        scale=args.scale,
        rank=args.rank,
        contexts=contexts,
        distill=args.distill,
        cfg=cfg,
        hook=args.hook,
    )
    edit.info["sae_path"] = str(args.sae)
    out = edit.save(args.out)
    print(json.dumps({"out": str(out), **edit.to_dict()}, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lora-patch",
        help="a rank-r LoRA edit that ablates (closed form) or clamps (distilled) SAE features",
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--sae", required=True, help="SAE folder (SAELens layout)")
    p.add_argument("--features", required=True, help="comma-separated feature ids, e.g. 12,345")
    p.add_argument("--method", choices=["ablate", "clamp"], default="ablate")
    p.add_argument(
        "--value", type=float, default=None, help="clamp: the value the feature is set to where it fires"
    )
    p.add_argument(
        "--scale", type=float, default=None, help="clamp: multiply the feature by this where it fires"
    )
    p.add_argument("--rank", type=int, default=8, help="LoRA rank, 4..16 (at least the number of features)")
    p.add_argument(
        "--distill",
        action="store_true",
        help="ablate: distil toward the hooked ablation (inexact architectures)",
    )
    p.add_argument("--hook", default=None, help="default: the SAE's own hook")
    p.add_argument("--data", default=None, help="text to measure and distil on (default: data/corpus)")
    p.add_argument("--contexts", type=int, default=256, help="contexts read from --data")
    p.add_argument("--ctx-len", type=int, default=32)
    p.add_argument("--steps", type=int, default=120, help="distillation steps")
    p.add_argument("--lr", type=float, default=2e-3, help="distillation learning rate")
    p.add_argument("--layers-back", type=int, default=4, help="distilled LoRA: writers of the last N layers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder, e.g. lora/NAME (a PEFT adapter folder)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_lora_patch)
