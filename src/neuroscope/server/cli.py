"""``neuroscope ui``: serve the workbench."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ui", help="serve the interactive workbench (REST + WebSocket + React UI)")
    p.add_argument("--model", default=None, help="model spec (default smollm2-135m)")
    p.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1; others need --token)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--token", default=None, help="shared secret for every request (or NEUROSCOPE_TOKEN)")
    p.add_argument(
        "--allow-host", action="append", default=None, help="extra Host header value to accept (repeatable)"
    )
    p.add_argument("--cors-origin", action="append", default=None, help="origin allowed by CORS (repeatable)")
    p.add_argument("--max-prompt-tokens", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads for the model worker (default: half the CPU cores, at least 1, which "
        "keeps clicks fast on a busy machine; 0: torch's default, every core)",
    )
    p.add_argument("--vectors-dir", default=None, help="folder of saved steering vectors (NAME.safetensors)")
    p.add_argument(
        "--sae", action="append", default=None, help="SAE folder for the Features view (repeatable)"
    )
    p.add_argument("--bundle", default=None, help="a bundle to verify and attach (SAEs, edits, labels)")
    p.add_argument("--force", action="store_true", help="attach a bundle made for other weights")
    p.add_argument(
        "--edit",
        action="append",
        default=None,
        help="NAME=FOLDER: a PEFT LoRA edit (e.g. the fix loop's OUT/lora) to toggle live (repeatable)",
    )
    p.add_argument(
        "--workspace", default=None, help="folder for labels and exported bundles (default ./workspace)"
    )
    p.add_argument(
        "--onnx", default=None, help="ONNX split export for NeuroScope-Web at /web/ (export-onnx --out)"
    )
    p.add_argument(
        "--sae-suite", default=None, help="SAE suite folder for the provenance view (train-sae-suite)"
    )
    p.add_argument(
        "--transcoders",
        default=None,
        help="transcoders folder for the attribution-graph view (train-transcoders; or NEUROSCOPE_TRANSCODERS)",
    )
    p.add_argument(
        "--no-prepare",
        action="store_true",
        help="do not prepare the default SAE suite in the background (by default the first start for a model "
        "records and trains one, cached for later starts, and the Features/Provenance views fill in when ready)",
    )
    p.add_argument(
        "--refusal-direction",
        default=None,
        help="refusal direction for the workbench's refusal slider: a safetensors file (tensor 'vector', metadata "
        "'layer') or 'auto' (computed from the shipped prompt sets, cached in the workspace)",
    )
    p.add_argument("--refusal-layer", type=int, default=None, help="layer of the refusal direction")
    p.add_argument(
        "--audit-file",
        default=None,
        help="log of refusal-steered live runs, inside the workspace (default refusal-audit.jsonl)",
    )
    p.add_argument(
        "--organism",
        default=None,
        help="backdoor organism folder whose trigger, response and held-out prompts the evaluation panel uses "
        "(default: the served model folder's organism.json)",
    )
    p.set_defaults(func=serve)


def settings_from_args(args: argparse.Namespace) -> Any:
    from neuroscope.server.settings import Settings

    given: dict[str, Any] = {
        "model": args.model,
        "host": args.host,
        "port": args.port,
        "token": args.token,
        "device": args.device,
        "max_prompt_tokens": args.max_prompt_tokens,
        "vectors_dir": args.vectors_dir,
        "onnx_dir": args.onnx,
        "sae_suite": args.sae_suite,
        "torch_threads": args.threads,
        "allowed_hosts": tuple(args.allow_host) if args.allow_host else None,
        "cors_origins": tuple(args.cors_origin) if args.cors_origin else None,
        "saes": tuple(args.sae) if getattr(args, "sae", None) else None,
        "bundle": getattr(args, "bundle", None),
        "force_bundle": True if getattr(args, "force", False) else None,
        "edits": tuple(args.edit) if getattr(args, "edit", None) else None,
        "workspace": getattr(args, "workspace", None),
        "refusal_direction": getattr(args, "refusal_direction", None),
        "refusal_layer": getattr(args, "refusal_layer", None),
        "audit_file": getattr(args, "audit_file", None),
        "prepare": not getattr(args, "no_prepare", False),
        "organism": getattr(args, "organism", None),
        "transcoders": getattr(args, "transcoders", None),
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if args.threads == 0:  # torch's own default (every core) rather than ours
        chosen["torch_threads"] = None
    return Settings(**chosen)


def ws_frame_cap(settings: Any) -> int:
    """The transport's frame cap, above the handler's ``max_body_bytes``: a message between the two gets a
    413 reply on an open connection; only a frame above the cap closes it (code 1009)."""
    return max(16 * settings.max_body_bytes, 1 << 20)


def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from neuroscope.errors import InvalidConfigError
    from neuroscope.server.app import create_app

    try:
        settings = settings_from_args(args)
    except ValidationError as e:
        # the settings validator's own message (e.g. the token refusal) is the useful part
        raise InvalidConfigError(
            "; ".join(str(err.get("msg", err)).removeprefix("Value error, ") for err in e.errors())
        ) from None
    app = create_app(settings)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{shown}:{settings.port}/" + (f"?token={settings.token}" if settings.token else "")
    print(f"NeuroScope workbench: {url}  (model {settings.model})", file=sys.stderr, flush=True)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="warning", ws_max_size=ws_frame_cap(settings)
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m neuroscope.server.cli ...`` (the same as ``neuroscope ui ...``)."""
    parser = argparse.ArgumentParser(prog="neuroscope")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ui", *(argv if argv is not None else sys.argv[1:])])
    from neuroscope.cli import run_parsed

    return run_parsed(args)


if __name__ == "__main__":
    sys.exit(main())
