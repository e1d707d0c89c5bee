"""``neuroscope train-sae``, ``neuroscope eval-sae`` and ``neuroscope sae-features``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from neuroscope.cli import set_threads


def _train(args: argparse.Namespace) -> int:
    from neuroscope.sae.config import TrainConfig
    from neuroscope.sae.train import train_sae

    set_threads(args.threads)
    tcfg = TrainConfig(
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_tokens=args.max_tokens,
        seed=args.seed,
        b_dec_init=args.b_dec_init,
        dead_tokens=args.dead_tokens,
        aux_k=args.aux_k,
        aux_coefficient=args.aux_coefficient,
        lr_find=args.lr_find,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
        hook=args.hook,
        lr_warmup_steps=args.warmup_steps,
        outlier_factor=args.outlier_factor or None,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        accelerator=args.accelerator,
    )
    _, result = train_sae(
        args.acts,
        tcfg=tcfg,
        out=args.out,
        arch=args.arch,
        k=args.k,
        expansion=args.expansion,
        l1_coefficient=args.l1,
        **arch_params(args),
    )
    if result.rank == 0:  # the other ranks of a DDP run hold the same SAE; one summary is enough
        summary = result.to_dict()
        summary.pop("history")
        print(json.dumps(summary, indent=2))
    return 0


# architecture flags -> SAEConfig fields (SAELens's names); None means "the architecture's default"
ARCH_FLAGS = {
    "topk_threshold_lr": "--topk-threshold-lr",
    "matryoshka_widths": "--matryoshka-prefixes",
    "l0_coefficient": "--jumprelu-l0-coefficient",
    "jumprelu_init_threshold": "--init-threshold",
    "jumprelu_bandwidth": "--bandwidth",
    "jumprelu_sparsity_loss_mode": "--sparsity-loss",
    "jumprelu_tanh_scale": "--tanh-scale",
    "jumprelu_ste_to_input": "--ste-to-input",
    "l0_warm_up_steps": "--l0-warmup-steps",
}


def arch_params(args: argparse.Namespace) -> dict[str, Any]:
    """The architecture flags that were given, as SAEConfig fields; a flag of another architecture is an
    error rather than silently ignored."""
    from neuroscope.errors import SAEArchitectureError
    from neuroscope.sae.archs import get_architecture

    arch = get_architecture(args.arch)
    given = {field: getattr(args, field) for field in ARCH_FLAGS if getattr(args, field) not in (None, False)}
    stray = [ARCH_FLAGS[f] for f in given if f not in arch.cfg_keys]
    if stray:
        raise SAEArchitectureError(f"{', '.join(stray)} do(es) not apply to --arch {args.arch}.")
    return given


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 64,256,1024, got {text!r}"
        ) from None


def _eval(args: argparse.Namespace) -> int:
    from neuroscope.models.loading import load_model
    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.evaluate import DEFINITIONS, evaluate_sae
    from neuroscope.sae.io import load_sae

    set_threads(args.threads)
    store = ActivationStore(args.acts)
    model = None
    if args.ce_contexts > 0:
        model = load_model(args.model or store.manifest["model"], device=args.device)
    results = []
    for path in args.sae:
        sae = load_sae(path)
        r = evaluate_sae(
            sae,
            store,
            model,
            hook=args.hook,
            ce_contexts=args.ce_contexts,
            name=str(path),
            outlier_factor=args.outlier_factor or None,
        )
        results.append(r.to_dict())
        print(json.dumps(r.to_dict()), file=sys.stderr)
    frontier = sorted(
        (
            {
                "sae": r["sae"],
                "k": r["k"],
                "l0": r["l0"],
                "fvu": r["fvu"],
                "ce_loss_recovered": r["ce_loss_recovered"],
            }
            for r in results
            if r["arch"] == "topk"
        ),
        key=lambda r: r["l0"],
    )
    payload = {
        "acts": str(store.path),
        "model": store.manifest.get("model"),
        "definitions": DEFINITIONS,
        "results": results,
        "frontier": frontier,
    }
    text = json.dumps(payload, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def _features(args: argparse.Namespace) -> int:
    from neuroscope.models.loading import load_model
    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.features import FeatureConfig, compute_features
    from neuroscope.sae.io import load_sae

    set_threads(args.threads)
    store = ActivationStore(args.acts)
    model = load_model(args.model or store.manifest["model"], device=args.device)
    out = compute_features(
        load_sae(args.sae),
        store,
        model,
        args.out or Path(args.sae) / "features",
        FeatureConfig(top_contexts=args.top_contexts, max_tokens=args.max_tokens),
        hook=args.hook,
    )
    print(json.dumps({"features": str(out)}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-sae", help="train a sparse autoencoder on recorded activations")
    p.add_argument("--acts", required=True, help="a folder written by `neuroscope trace`")
    p.add_argument(
        "--out", required=True, help="output folder (SAELens format: cfg.json + sae_weights.safetensors)"
    )
    p.add_argument(
        "--arch",
        default="topk",
        help="topk, relu (ReLU + L1), batchtopk, jumprelu or matryoshka (Matryoshka BatchTopK)",
    )
    p.add_argument(
        "--k",
        type=int,
        default=32,
        help="active latents per token (topk; the mean for batchtopk, matryoshka)",
    )
    p.add_argument("--l1", type=float, default=5.0, help="L1 coefficient β (relu)")
    a = p.add_argument_group("architecture parameters (SAELens's defaults when left out)")
    a.add_argument(
        "--topk-threshold-lr",
        dest="topk_threshold_lr",
        type=float,
        default=None,
        help="batchtopk, matryoshka: rate of the inference threshold's moving average (0.01)",
    )
    a.add_argument(
        "--matryoshka-prefixes",
        dest="matryoshka_widths",
        type=_widths,
        default=None,
        help="matryoshka: nested prefix widths, strictly increasing, e.g. 64,256,1024 (d_sae is appended)",
    )
    a.add_argument(
        "--jumprelu-l0-coefficient",
        dest="l0_coefficient",
        type=float,
        default=None,
        help="jumprelu: weight of the sparsity penalty (1.0)",
    )
    a.add_argument(
        "--init-threshold", dest="jumprelu_init_threshold", type=float, default=None, help="jumprelu (0.01)"
    )
    a.add_argument(
        "--bandwidth",
        dest="jumprelu_bandwidth",
        type=float,
        default=None,
        help="jumprelu: width ε of the straight-through estimator's rectangle kernel (0.05)",
    )
    a.add_argument(
        "--sparsity-loss",
        dest="jumprelu_sparsity_loss_mode",
        choices=["step", "tanh"],
        default=None,
        help="jumprelu: L0 (step, DeepMind) or tanh (Anthropic) penalty (step)",
    )
    a.add_argument(
        "--tanh-scale", dest="jumprelu_tanh_scale", type=float, default=None, help="jumprelu (4.0)"
    )
    a.add_argument(
        "--ste-to-input",
        dest="jumprelu_ste_to_input",
        action="store_true",
        help="jumprelu: the estimator's gradient also reaches the encoder (Anthropic), not only the threshold",
    )
    a.add_argument(
        "--l0-warmup-steps",
        dest="l0_warm_up_steps",
        type=int,
        default=None,
        help="jumprelu: ramp the penalty up linearly over these steps (0)",
    )
    p.add_argument("--expansion", type=float, default=8, help="d_sae = expansion × d_in")
    p.add_argument("--hook", default=None, help="which recorded hook (when the folder holds several)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default: 2e-4/sqrt(d_sae/16384) for topk, batchtopk, matryoshka; else 4e-4)",
    )
    p.add_argument("--lr-find", action="store_true", help="pick the learning rate with Lightning's LR finder")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=None, help="stop after this many training tokens")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--b-dec-init", default="geometric_median", choices=["geometric_median", "mean", "zeros"])
    p.add_argument(
        "--dead-tokens",
        type=int,
        default=100_000,
        help="tokens without firing before a latent counts as dead",
    )
    p.add_argument(
        "--aux-k", type=int, default=None, help="dead latents used by the AuxK loss (default d_in/2)"
    )
    p.add_argument("--aux-coefficient", type=float, default=1 / 32)
    p.add_argument(
        "--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (0: at the end)"
    )
    p.add_argument(
        "--outlier-factor",
        type=float,
        default=10.0,
        help="leave out tokens with norm > this × median (massive activations; 0 keeps them)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (per process)")
    p.add_argument("--no-progress", action="store_true")
    d = p.add_argument_group("data-parallel training (Lightning; --batch-size is per process)")
    d.add_argument("--devices", type=int, default=1, help="processes per node (GPUs, or CPU processes)")
    d.add_argument(
        "--strategy", default="auto", choices=["auto", "ddp"], help="ddp for more than one process"
    )
    d.add_argument(
        "--num-nodes",
        type=int,
        default=1,
        help="nodes; start the same command on each with MASTER_ADDR, MASTER_PORT and NODE_RANK set",
    )
    d.add_argument("--accelerator", default="auto", help="auto, cpu or gpu")
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "eval-sae", help="held-out FVU, L0, dead/dense fractions and CE loss recovered (JSON)"
    )
    e.add_argument(
        "--sae", required=True, nargs="+", help="SAE folder(s); several TopK SAEs give an FVU–L0 frontier"
    )
    e.add_argument(
        "--acts", required=True, help="held-out activations recorded by `neuroscope trace --split heldout`"
    )
    e.add_argument(
        "--model", default=None, help="model for CE loss recovered (default: the one in the manifest)"
    )
    e.add_argument("--hook", default=None)
    e.add_argument("--ce-contexts", type=int, default=64, help="held-out contexts for CE loss (0 skips it)")
    e.add_argument(
        "--outlier-factor",
        type=float,
        default=10.0,
        help="tokens with norm > this × median are reported apart (0: no separation)",
    )
    e.add_argument("--out", default=None, help="write the JSON here too")
    e.add_argument("--device", default=None)
    e.add_argument("--threads", type=int, default=None)
    e.set_defaults(func=_eval)

    f = subparsers.add_parser(
        "sae-features", help="per-feature density, top contexts, top tokens, logit effects"
    )
    f.add_argument("--sae", required=True)
    f.add_argument("--acts", required=True)
    f.add_argument("--out", default=None, help="default: SAE_FOLDER/features")
    f.add_argument("--model", default=None)
    f.add_argument("--hook", default=None)
    f.add_argument("--top-contexts", type=int, default=20)
    f.add_argument("--max-tokens", type=int, default=None)
    f.add_argument("--device", default=None)
    f.add_argument("--threads", type=int, default=None)
    f.set_defaults(func=_features)
