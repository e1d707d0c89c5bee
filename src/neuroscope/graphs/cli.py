"""``neuroscope train-sae-suite``, ``neuroscope provenance`` and ``neuroscope circuit``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neuroscope.cli import set_threads


def _suite(args: argparse.Namespace) -> int:
    from neuroscope.models.loading import load_model
    from neuroscope.sae.suite import SuiteConfig, parse_layers, train_suite

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    cfg = SuiteConfig(
        layers=parse_layers(args.layers),
        hook=args.hook,
        tokens=args.tokens,
        heldout_tokens=args.heldout_tokens,
        k=args.k,
        expansion=args.expansion,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        ctx_len=args.ctx_len,
        data=args.data,
        features=not args.no_features,
        ce_contexts=args.ce_contexts,
        seed=args.seed,
    )
    result = train_suite(model, cfg, args.out, progress=not args.no_progress)
    print(result.table())
    print(json.dumps({"suite": result.out, "seconds": result.seconds}), file=sys.stderr)
    return 0


def _write(result, json_out: str | None, html_out: str | None) -> None:
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    if html_out:
        Path(html_out).parent.mkdir(parents=True, exist_ok=True)
        result.figure().write_html(html_out, include_plotlyjs=True)


def _provenance(args: argparse.Namespace) -> int:
    from neuroscope.graphs.provenance import ProvenanceConfig, provenance
    from neuroscope.models.loading import load_model
    from neuroscope.sae.suite import SAESuite

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    suite = SAESuite.load(args.saes, model)
    cfg = ProvenanceConfig(
        depth=args.depth,
        coverage=args.coverage,
        max_parents=args.max_parents,
        max_expand=args.max_expand,
        fold_identity=not args.identity_edges,
    )
    graph = provenance(model, suite, args.layer, args.feature, args.prompt, args.position, cfg)
    print(graph.summary())
    _write(graph, args.json, args.html)
    return 0


def _circuit(args: argparse.Namespace) -> int:
    from neuroscope.graphs.circuits import CircuitConfig, find_circuit, load_task
    from neuroscope.models.loading import load_model

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    task = load_task(model, args.task)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    cfg = CircuitConfig(
        edges=args.edges,
        steps=args.steps,
        sizes=sizes,
        random_draws=args.random_draws,
        seed=args.seed,
        baseline=args.baseline,
        connected=not args.unconnected,
    )
    result = find_circuit(model, task, cfg)
    print(result.summary())
    _write(result, args.json, args.html)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-sae-suite",
        help="record several layers in one pass and train one SAE per layer (what provenance needs)",
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--layers", required=True, help="e.g. 12-15 or 12,13,15")
    p.add_argument("--hook", default="resid_post", choices=["resid_post", "resid_pre"])
    p.add_argument(
        "--tokens", type=int, default=250_000, help="training tokens recorded (all layers at once)"
    )
    p.add_argument("--heldout-tokens", type=int, default=40_000, help="held-out tokens for the eval table")
    p.add_argument("--k", type=int, default=64, help="TopK active latents")
    p.add_argument("--expansion", type=float, default=8, help="d_sae = expansion × d_model")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ctx-len", type=int, default=128)
    p.add_argument("--data", default=None, help="corpus (default: data/corpus, the python3-doc prose)")
    p.add_argument("--ce-contexts", type=int, default=32, help="held-out contexts for CE loss recovered")
    p.add_argument("--no-features", action="store_true", help="skip the per-feature stores (labels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="suite folder (re-running resumes it)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_suite)

    q = subparsers.add_parser(
        "provenance", help="where a feature comes from: upstream features, heads, MLPs, errors, tokens"
    )
    q.add_argument("--model", default="smollm2-135m")
    q.add_argument("--saes", required=True, help="an SAE suite folder (train-sae-suite)")
    q.add_argument("--layer", type=int, required=True)
    q.add_argument("--feature", type=int, required=True)
    q.add_argument("--prompt", required=True)
    q.add_argument("--position", type=int, default=-1)
    q.add_argument("--depth", type=int, default=2, help="layers upstream (1..4)")
    q.add_argument("--coverage", type=float, default=0.8, help="keep parents up to this share of |input|")
    q.add_argument("--max-parents", type=int, default=10)
    q.add_argument("--max-expand", type=int, default=8, help="features expanded per layer")
    q.add_argument("--identity-edges", action="store_true", help="keep identity skip edges unfolded")
    q.add_argument("--json", default=None)
    q.add_argument("--html", default=None)
    q.add_argument("--device", default=None)
    q.add_argument("--threads", type=int, default=None)
    q.set_defaults(func=_provenance)

    c = subparsers.add_parser("circuit", help="EAP-IG circuit discovery with a faithfulness curve")
    c.add_argument("--model", default="smollm2-135m")
    c.add_argument("--task", default="ioi", help="a shipped task name (ioi) or a JSON file")
    c.add_argument("--edges", type=int, default=200, help="edges in the reported circuit")
    c.add_argument("--steps", type=int, default=5, help="integrated-gradients steps")
    c.add_argument("--sizes", default=None, help="circuit sizes for the faithfulness curve, e.g. 50,100,200")
    c.add_argument("--random-draws", type=int, default=5)
    c.add_argument(
        "--baseline",
        default="corrupted",
        choices=["corrupted", "mean"],
        help="scores compare the clean run with the corrupted prompts (EAP-IG) or with the task means",
    )
    c.add_argument(
        "--unconnected",
        action="store_true",
        help="plain top-N by |score| (default: only edges on complete embeddings -> logits paths count)",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", default=None)
    c.add_argument("--html", default=None)
    c.add_argument("--device", default=None)
    c.add_argument("--threads", type=int, default=None)
    c.set_defaults(func=_circuit)
