"""``neuroscope qk-attribution``: why a head attends where it does, as (query node, key node) pairs of a
model's transcoder features, errors, embeddings and earlier attention outputs (:mod:`.qk`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroscope.cli import set_threads


def _qk(args: argparse.Namespace) -> int:
    from neuroscope.models.loading import load_model
    from neuroscope.transcoders.graph_cli import load_transcoder_set
    from neuroscope.transcoders.qk import qk_attribution

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    tcs = load_transcoder_set(args.transcoders, model)
    r = qk_attribution(model, tcs, args.prompt, args.layer, args.head, args.query, args.key, args.top)
    d = r.to_dict()
    q, k = d["tokens"][r.query_pos], d["tokens"][r.key_pos]
    print(
        f"L{r.layer}H{r.head} (kv head {r.kv_head}): query {r.query_pos} {q!r} -> key {r.key_pos} {k!r}: "
        f"score {r.score:.4f} (pairs sum to {r.pair_sum:.4f}), attention weight {r.pattern:.3f}"
    )
    for side in ("query_nodes", "key_nodes"):
        print(f"\n{side.replace('_', ' ')} (share of the score):")
        for n in d[side]:
            print(f"  {n['total']:+.4f}  {n['id']}")
    print("\ntop pairs:")
    for p in d["top_pairs"]:
        print(f"  {p['value']:+.4f}  {p['query']} x {p['key']}")
    if args.json:
        Path(args.json).write_text(json.dumps(d, indent=2))
    if args.html:
        from neuroscope.analysis.figures import write

        write(r.figure(), args.html)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "qk-attribution",
        help="a head's attention score at (query, key) split into pairs of transcoder features and tokens",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--transcoders", required=True, help="folder written by train-transcoders")
    p.add_argument("--prompt", required=True, help="text; a special token is prepended as graphs do")
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, required=True)
    p.add_argument("--query", type=int, default=-1, help="query position (negative: from the end)")
    p.add_argument("--key", type=int, default=0, help="key position (negative: from the end)")
    p.add_argument("--top", type=int, default=20, help="nodes per side and pairs shown")
    p.add_argument("--json", default=None, help="write the whole result (QKAttribution.to_dict())")
    p.add_argument("--html", default=None, help="heatmap of the largest pairs (QKAttribution.figure())")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_qk)
