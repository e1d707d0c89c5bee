"""``neuroscope export-onnx``: two ONNX parts split at a layer, optional vectors, optional validation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export-onnx",
        help="export a model to ONNX in two parts split after block K (a steering vector goes between them)",
    )
    p.add_argument("--model", default="smollm2-135m", help="model spec (default smollm2-135m)")
    p.add_argument("--split", type=int, required=True, help="last block of part A (0..n_layers-2)")
    p.add_argument("--out", required=True, help="output folder (an earlier export there is replaced)")
    p.add_argument(
        "--vectors",
        nargs="+",
        default=(),
        metavar="NAME",
        help="steering vectors from the vector store (--vectors-dir) to write next to the parts",
    )
    p.add_argument(
        "--vectors-dir",
        default=None,
        help="the steering-vector store (the folder `neuroscope ui --vectors-dir` reads; "
        "default $NEUROSCOPE_VECTORS_DIR)",
    )
    p.add_argument("--max-length", type=int, default=None, help="longest sequence (default: context, ≤ 2048)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--validate", action="store_true", help="compare with PyTorch; figures go in the manifest")
    p.add_argument("--validate-only", action="store_true", help="validate an existing export in --out")
    p.add_argument("--prompts", type=int, default=20, help="validation prompts (default 20)")
    p.add_argument("--no-web", action="store_true", help="do not copy NeuroScope-Web into the folder")
    p.add_argument(
        "--external-data",
        action="store_true",
        help="always save weights as external data (default: only for a part over 2 GB)",
    )
    p.add_argument(
        "--no-kv-cache",
        action="store_true",
        help="do not export the KV-cached parts (part_*_kv.onnx, one position per generated token)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_run)


def _vectors_dir(args: argparse.Namespace) -> str:
    import os

    from neuroscope.errors import InvalidConfigError

    folder = args.vectors_dir or os.environ.get("NEUROSCOPE_VECTORS_DIR")
    if not folder:
        raise InvalidConfigError(
            "--vectors needs --vectors-dir (or NEUROSCOPE_VECTORS_DIR): the vector store."
        )
    return folder


def _run(args: argparse.Namespace) -> int:
    from neuroscope.cli import set_threads
    from neuroscope.export.onnx_split import DEFAULT_OPSET, ExportConfig, export_split, require_export
    from neuroscope.export.vectors import select_vectors
    from neuroscope.models.loading import load_model

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    out = Path(args.out)
    if args.validate_only:
        require_export(out)
    else:
        vectors = select_vectors(_vectors_dir(args), list(args.vectors)) if args.vectors else []
        config = ExportConfig(
            split=args.split,
            max_length=args.max_length,
            opset=args.opset or DEFAULT_OPSET,
            copy_web_page=not args.no_web,
            kv_cache=not args.no_kv_cache,
            **({"external_data_bytes": 0} if args.external_data else {}),
        )
        manifest = export_split(model, config, out, vectors)
        sizes = {k: v["bytes"] for k, v in manifest["files"].items() if k.endswith((".onnx", ".data"))}
        print(
            f"exported {manifest['model']} split after block {args.split} ({manifest['boundary_hook']}) "
            f"to {out} in {manifest['export_seconds']:.1f} s: "
            + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items()),
            file=sys.stderr,
        )
    if args.validate or args.validate_only:
        from neuroscope.export.validate import validate_export

        report = validate_export(model, out, n_prompts=args.prompts)
        print(report.summary(), file=sys.stderr)
        print(json.dumps({k: v for k, v in report.to_dict().items() if k != "prompts"}, indent=2))
        return 0 if report.passed else 1
    return 0
