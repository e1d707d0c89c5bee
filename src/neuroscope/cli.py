"""The ``neuroscope`` (alias ``microscope``) command line. Subcommands live beside the code they drive."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from neuroscope.errors import NeuroscopeError

# Modules that contribute subcommands through ``register(subparsers)``; a missing one is skipped so the
# core CLI works while optional parts are absent.
PLUGINS = (
    "neuroscope.analysis.cli",
    "neuroscope.record.cli",
    "neuroscope.sae.cli",
    "neuroscope.train.cli",
    "neuroscope.server.cli",
    "neuroscope.edits.cli",
    "neuroscope.sae.features_cli",
    "neuroscope.bundles.cli",
    "neuroscope.export.cli",
    "neuroscope.attacks.cli",
    "neuroscope.graphs.cli",
    "neuroscope.organisms.cli",
    "neuroscope.sae.bench.cli",
    "neuroscope.edits.family_cli",
    "neuroscope.diff.cli",
    "neuroscope.transcoders.cli",
)


def _info(args: argparse.Namespace) -> int:
    from neuroscope.models.loading import load_model

    # the first load in a process also pays for importing transformers' modelling code (seconds, once);
    # report it apart, so load_seconds is what every later load costs
    t0 = time.perf_counter()
    import transformers.modeling_utils  # noqa: F401

    imports = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = load_model(args.model, device=args.device, quantize=args.quantize)
    seconds = time.perf_counter() - t0
    info = {
        **model.cfg.to_dict(),
        "device": str(model.device),
        "dtype": str(model.dtype),
        "n_hook_points": len(model.hook_names()),
        "load_seconds": round(seconds, 3),
        "import_seconds": round(imports, 3),
        "quantization": model.quantization.to_dict() if model.quantization else None,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>20}: {v}")
    if args.hooks:
        print("\n".join(model.hook_names()))
    return 0


def _pull(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neuroscope.models.loading import ALIASES, alias_path, convert_gguf

    t0 = time.perf_counter()
    source = alias_path(args.model) if args.model in ALIASES else Path(args.model)
    folder = convert_gguf(source, force=args.force)
    print(f"{args.model}: cached at {folder} ({time.perf_counter() - t0:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroscope", description="Mechanistic interpretability workbench.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="show a model's config, hook points and load time")
    p.add_argument("model", nargs="?", default="smollm2-135m")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--hooks", action="store_true", help="list every hook name")
    p.add_argument("--quantize", default=None, choices=["int8", "nf4"], help="load in 8 or 4 bits")
    p.set_defaults(func=_info)
    p = sub.add_parser("pull", help="prepare the local cache for a model (dequantise a GGUF once)")
    p.add_argument("model", nargs="?", default="smollm2-135m")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=_pull)
    for mod in PLUGINS:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue
            raise
        module.register(sub)
    return parser


def set_threads(n: int | None) -> None:
    """``--threads N``: torch intra-op threads for this process (unset keeps torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed subcommand; a NeuroscopeError becomes one line on stderr and exit code 2."""
    try:
        return int(args.func(args) or 0)
    except NeuroscopeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    from neuroscope.models.quiet import offline_by_default, quiet_imports

    offline_by_default()
    quiet_imports()
    return run_parsed(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
