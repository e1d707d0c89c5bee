"""``neuroscope export`` and ``neuroscope import``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroscope.cli import set_threads
from neuroscope.errors import CorruptDataError


def _labels(path: str | None) -> dict:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptDataError(f"--labels {path}: {e}") from e
    if not isinstance(data, dict):
        raise CorruptDataError(f"--labels {path} must hold {{sae_name: {{feature_id: label}}}}")
    return data


def _export(args: argparse.Namespace) -> int:
    from neuroscope.bundles.export import export_bundle, from_folders
    from neuroscope.models.loading import load_model

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    contents = from_folders(args.sae or [], args.lora or [], _labels(args.labels))
    out = export_bundle(model, contents, args.out, overwrite=args.force)
    manifest = json.loads((out / "manifest.json").read_text())
    print(json.dumps({"bundle": str(out), "saes": list(manifest["saes"]), "edits": list(manifest["edits"])}))
    return 0


def _import(args: argparse.Namespace) -> int:
    from neuroscope.bundles.export import export_bundle
    from neuroscope.bundles.merge import export_merged
    from neuroscope.bundles.verify import import_bundle
    from neuroscope.models.loading import load_model

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    attached = import_bundle(args.bundle, model, force=args.force)
    summary = attached.to_dict()
    if args.export:
        summary["exported"] = str(export_bundle(model, attached.contents, args.export))
    if args.merge:
        edits = list(attached.contents.edits.values())
        summary["merged"] = str(export_merged(model, edits, args.merge))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    e = subparsers.add_parser("export", help="write a bundle: saes/ + lora/ + manifest.json (checksummed)")
    e.add_argument("--model", default="smollm2-135m")
    e.add_argument("--sae", nargs="+", default=[], help="SAE folders")
    e.add_argument("--lora", nargs="+", default=[], help="edit folders from `neuroscope lora-patch`")
    e.add_argument("--labels", default=None, help='JSON {"sae_name": {"feature_id": "label"}}')
    e.add_argument("--out", required=True)
    e.add_argument("--force", action="store_true", help="replace --out if it exists")
    e.add_argument("--device", default=None)
    e.add_argument("--threads", type=int, default=None)
    e.set_defaults(func=_export)

    i = subparsers.add_parser("import", help="verify a bundle and attach its SAEs and edits (all or none)")
    i.add_argument("bundle")
    i.add_argument("--model", default="smollm2-135m")
    i.add_argument(
        "--force", action="store_true", help="attach even if the bundle was made for other weights"
    )
    i.add_argument(
        "--merge", default=None, metavar="OUT", help="also write a merged model folder (all edits)"
    )
    i.add_argument(
        "--export", default=None, metavar="OUT", help="re-export the verified bundle with our writers"
    )
    i.add_argument("--device", default=None)
    i.add_argument("--threads", type=int, default=None)
    i.set_defaults(func=_import)
