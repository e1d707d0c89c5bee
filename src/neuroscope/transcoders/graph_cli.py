"""``neuroscope attribution-graph``: an attribution graph over a model's transcoders (circuit-tracer's
definitions), written as the project's graph JSON, a static HTML figure and, optionally, circuit-tracer's
frontend JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from neuroscope.cli import set_threads

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.transcoders.model import TranscoderSet


def load_transcoder_set(path: str, model: HookedModel) -> TranscoderSet:
    """The one place the CLI loads transcoders: a saved folder, checked against the model (another model,
    width or hook is refused by name)."""
    from neuroscope.transcoders.io import load_transcoders

    return load_transcoders(path, model)


def _graph(args: argparse.Namespace) -> int:
    from neuroscope.graphs.cli import _write
    from neuroscope.models.loading import load_model
    from neuroscope.transcoders.attribution import AttributionConfig, attribute
    from neuroscope.transcoders.ctformat import to_circuit_tracer, write_circuit_tracer
    from neuroscope.transcoders.replacement import ReplacementModel

    set_threads(args.threads)
    cfg = AttributionConfig(
        max_n_logits=args.max_logits,
        desired_logit_prob=args.logit_prob,
        max_feature_nodes=args.max_feature_nodes or None,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        node_threshold=args.node_threshold,
        edge_threshold=args.edge_threshold,
    )
    model = load_model(args.model, device=args.device)
    rm = ReplacementModel(model, load_transcoder_set(args.transcoders, model))
    graph = attribute(rm, args.prompt, cfg)
    print(graph.summary())
    _write(graph, args.json, args.html)
    if args.ct_dir:
        path = write_circuit_tracer(to_circuit_tracer(graph, args.slug, args.scan), args.ct_dir)
        print(f"circuit-tracer frontend graph: {path}", file=sys.stderr)
    print(json.dumps({"timings": graph.timings, "scores": graph.scores().to_dict()}), file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attribution-graph",
        help="attribution graph over transcoders (circuit-tracer's definitions): pruned, scored, exported",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--transcoders", required=True, help="folder written by train-transcoders")
    p.add_argument(
        "--prompt", required=True, help="text; a special token is prepended as circuit-tracer does"
    )
    p.add_argument(
        "--node-threshold", type=float, default=0.8, help="cumulative influence of nodes kept, (0, 1]"
    )
    p.add_argument(
        "--edge-threshold", type=float, default=0.98, help="cumulative influence of edges kept, (0, 1]"
    )
    p.add_argument("--max-feature-nodes", type=int, default=7500, help="0: every active feature")
    p.add_argument("--max-logits", type=int, default=10)
    p.add_argument(
        "--logit-prob", type=float, default=0.95, help="top logits up to this cumulative probability"
    )
    p.add_argument(
        "--batch-size", type=int, default=512, help="circuit-tracer's batch (ranking refresh cadence)"
    )
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--json", default=None, help="graph document (neuroscope-graph/1, kind attribution)")
    p.add_argument("--html", default=None, help="static figure")
    p.add_argument(
        "--ct-dir", default=None, help="also write circuit-tracer's frontend JSON into this folder"
    )
    p.add_argument("--slug", default="neuroscope-graph", help="the graph's name in circuit-tracer's frontend")
    p.add_argument("--scan", default=None, help="circuit-tracer scan id (default: neuroscope-MODEL)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_graph)
