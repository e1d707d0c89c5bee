"""``neuroscope lens|attention|dla|attribute|patch|neurons|probe|geometry|steer|experiment`` (wired via ``register``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _model(args: argparse.Namespace):
    from neuroscope.models.loading import load_model

    return load_model(args.model, device=args.device, quantize=getattr(args, "quantize", None))


def _emit(args: argparse.Namespace, result: Any, lines: list[str]) -> int:
    print("\n".join(lines))
    if getattr(args, "json", None):
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1, default=str))
        print(f"wrote {args.json}")
    if getattr(args, "html", None):
        from neuroscope.analysis.figures import write

        print(f"wrote {write(result.figure(), args.html)}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m", help="model spec (default: smollm2-135m)")
    p.add_argument("--device", default=None)
    p.add_argument(
        "--quantize",
        default=None,
        choices=["int8", "nf4"],
        help="load the model in 8 or 4 bits (bitsandbytes)",
    )
    p.add_argument("--json", metavar="OUT", default=None, help="write the result as JSON to OUT")
    p.add_argument("--html", metavar="OUT", default=None, help="write the figure as HTML to OUT")


def _lens(args):
    from neuroscope.analysis.lens import TunedLens, logit_lens

    tuned = TunedLens.load(args.tuned) if args.tuned else None
    r = logit_lens(_model(args), args.prompt, k=args.k, tuned=tuned)
    lines = [f"{'layer':>11} {'top token':>16} {'p':>6} {'KL→final':>9} {'rank':>5}   (last position)"]
    for l, lab in enumerate(r.labels):
        lines.append(
            f"{lab:>11} {r.top_tokens[l][-1][0]!r:>16} {r.top_probs[l][-1][0]:6.3f} {r.kl_to_final[l][-1]:9.4f} {r.final_token_rank[l][-1]:5d}"
        )
    return _emit(args, r, lines)


def _attention(args):
    from neuroscope.analysis import attention

    model = _model(args)
    if args.prompt:
        r = attention.attention_patterns(model, args.prompt)
        lines = ["layer head  entropy sparsity " + " ".join(f"{k[:8]:>8}" for k in attention.KINDS)]
        for l in range(model.cfg.n_layers):
            for h in range(model.cfg.n_heads):
                lines.append(
                    f"{l:5d} {h:4d} {r.entropy[l][h]:8.3f} {r.sparsity[l][h]:8.3f} "
                    + " ".join(f"{r.scores[k][l][h]:8.3f}" for k in attention.KINDS)
                )
        return _emit(args, r, lines)
    r = attention.classify_heads(model, n_seqs=args.n_seqs, half_len=args.half_len, seed=args.seed)
    lines = []
    for k in attention.KINDS:
        heads = ", ".join(f"L{l}H{h} {s:.2f}" for l, h, s in r.labels[k]) or "none"
        lines.append(f"{k} (≥ {r.thresholds[k]}): {heads}")
    if args.ablate:
        a = attention.induction_ablation(model, r, k=args.ablate, n_draws=args.draws, seed=args.seed + 1)
        lines.append(
            f"ablating top-{args.ablate} induction heads {a.top_heads}: Δloss {a.top_delta:.3f}; random "
            f"{args.ablate} heads: {a.random_mean:.3f} [{a.random_ci[0]:.3f}, {a.random_ci[1]:.3f}]; ratio {a.ratio:.1f}"
        )
        return _emit(args, _Both(r, a), lines)
    return _emit(args, r, lines)


class _Both:
    """Classification and the induction ablation in one JSON (figure: the induction scores)."""

    def __init__(self, classification: Any, ablation: Any):
        self.classification, self.ablation = classification, ablation

    def to_dict(self) -> dict[str, Any]:
        return {
            "classification": self.classification.to_dict(),
            "induction_ablation": self.ablation.to_dict(),
        }

    def figure(self):
        return self.classification.figure()


def _dla(args):
    from neuroscope.analysis.residual import direct_logit_attribution

    r = direct_logit_attribution(_model(args), args.prompt, args.answer, args.wrong, position=args.position)
    lines = [
        f"logit diff {r.actual:.4f}; sum of contributions {r.total:.4f} (relative error {r.rel_error:.2e})"
    ]
    lines += [f"{lab:>14} {v:+.4f}" for lab, v in r.top(args.top)]
    return _emit(args, r, lines)


def _attribute(args):
    from neuroscope.analysis.attribution import gradient_x_input, integrated_gradients

    model = _model(args)
    if args.method == "ig":
        r = integrated_gradients(
            model, args.prompt, args.answer, args.wrong, steps=args.steps, baseline=args.baseline
        )
    else:
        r = gradient_x_input(model, args.prompt, args.answer, args.wrong)
    lines = [
        f"{i:3d} {t!r:>16} {a:+.4f}"
        for i, (t, a) in enumerate(zip(r.str_tokens, r.attributions, strict=False))
    ]
    if r.completeness_error is not None:
        lines.append(
            f"f(x)={r.f_input:.4f} f(baseline)={r.f_baseline:.4f} sum={sum(r.attributions):.4f} "
            f"completeness error {r.completeness_error:.2e}"
        )
    return _emit(args, r, lines)


def _patch(args):
    from neuroscope.analysis import patching
    from neuroscope.analysis._util import load_data

    model = _model(args)
    ex = load_data("ioi")["prompts"][0]
    clean, corrupted = args.clean or ex["clean"], args.corrupted or ex["corrupted"]
    answer, wrong = args.answer or ex["answer"], args.wrong or ex["wrong"]
    setup = patching.prepare(model, clean, corrupted, answer, wrong)
    if args.method == "path":
        return _path_patch(args, model, setup)
    if args.method == "attribution":
        r = patching.attribution_patching(model, setup, args.site)
    else:
        r = patching.patch_sweep(model, setup, args.site, batch_size=args.batch_size)
    arr = r.array()
    lines = [
        f"clean logit diff {setup.clean_ld:.3f}, corrupted {setup.corrupted_ld:.3f}; {r.method} {r.site}: "
        f"{r.n_forwards} forwards, {r.seconds:.2f} s",
        "layer " + " ".join(f"{c[:7]:>7}" for c in r.cols),
    ]
    if arr.ndim == 2:
        lines += [f"{l:5d} " + " ".join(f"{v:7.3f}" for v in row) for l, row in enumerate(arr)]
    return _emit(args, r, lines)


def _heads_arg(item: str, flag: str) -> list[tuple[Any, ...]]:
    """``"9.6,9.9"`` -> [(9, 6), (9, 9)]; receivers carry a third part, ``"9.6.q"``."""
    from neuroscope.errors import InvalidConfigError

    out: list[tuple[Any, ...]] = []
    for part in item.split(","):
        bits = part.strip().split(".")
        n = 3 if flag == "--receivers" else 2
        try:
            if len(bits) != n:
                raise ValueError
            out.append((int(bits[0]), int(bits[1]), bits[2]) if n == 3 else (int(bits[0]), int(bits[1])))
        except ValueError:
            shape = "LAYER.HEAD.q|k|v" if n == 3 else "LAYER.HEAD"
            raise InvalidConfigError(f"{flag} takes {shape} items (comma-separated), got {part!r}") from None
    return out


def _path_patch(args, model, setup):
    from neuroscope.analysis import patching

    if args.senders:
        senders = [_heads_arg(item, "--senders") for item in args.senders]
    else:  # every head on its own: a [layer, head] map
        senders = [[(l, h)] for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    receivers = (
        [r for item in args.receivers for r in _heads_arg(item, "--receivers")] if args.receivers else None
    )
    r = patching.path_patching(model, setup, senders, receivers, batch_size=args.batch_size)
    target = "the logits" if receivers is None else ", ".join(f"L{l}H{h}.{k}" for l, h, k in receivers)
    lines = [
        f"clean logit diff {setup.clean_ld:.3f}, corrupted {setup.corrupted_ld:.3f}; path patching to {target} "
        "(1 = clean restored)"
    ]
    if not args.senders:
        arr = r.head_map(model.cfg.n_layers, model.cfg.n_heads)
        lines.append("layer " + " ".join(f"{h:>7}" for h in range(model.cfg.n_heads)))
        lines += [f"{l:5d} " + " ".join(f"{v:7.3f}" for v in row) for l, row in enumerate(arr)]
    else:
        lines += [
            f"{' '.join(f'L{l}H{h}' for l, h in s):>24} {v:+.4f}"
            for s, v in zip(r.senders, r.values, strict=True)
        ]
    return _emit(args, _PathFigure(r, model.cfg.n_layers, model.cfg.n_heads), lines)


class _PathFigure:
    """A path-patching result whose figure knows the model's shape (the map needs it)."""

    def __init__(self, result: Any, n_layers: int, n_heads: int):
        self.result, self.n_layers, self.n_heads = result, n_layers, n_heads

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def figure(self):
        return self.result.figure(self.n_layers, self.n_heads)


def _texts(arg: str | None) -> list[str]:
    from neuroscope.analysis._util import load_data

    if not arg:
        return load_data("digits")["texts"]
    path = Path(arg)
    if path.suffix == ".json":
        blob = json.loads(path.read_text())
        return blob["texts"] if isinstance(blob, dict) else blob
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


def _neurons(args):
    from neuroscope.analysis.neurons import max_activating

    r = max_activating(
        _model(args), _texts(args.texts), args.hook, neuron=args.neuron, k=args.k, window=args.window
    )
    lines = [f"{k}: {v:.4g}" for k, v in r.stats.items()]
    lines += [f"{e.activation:8.3f}  {e.highlighted()!r}" for e in r.examples]
    return _emit(args, r, lines)


def _probe(args):
    from neuroscope.analysis.probes import probe_hook, probe_labelled

    if args.labels:
        r = probe_labelled(_model(args), args.labels, args.hook, seed=args.seed)
        task = f"labels from {args.labels} ({r.n_classes} classes: {', '.join(r.classes or [])})"
        lines = [f"task: {task}; majority baseline {r.majority_baseline:.3f}"]
    else:
        r = probe_hook(_model(args), _texts(args.texts), args.hook, seed=args.seed)
        lines = ["task: is the token a digit (balanced)"]
    lines += [
        f"hook {r.hook}; train {r.n_train}, test {r.n_test}",
        f"probe test accuracy {r.test_accuracy:.3f} (train {r.train_accuracy:.3f}); shuffled-label control "
        f"{r.control_test_accuracy:.3f}; selectivity {r.selectivity:+.3f}",
    ]
    return _emit(args, r, lines)


def _geometry(args):
    from neuroscope.analysis import geometry

    model = _model(args)
    if args.trajectory:
        r = geometry.trajectory_pca(model, args.trajectory)
        lines = [f"explained variance: {', '.join(f'{v:.3f}' for v in r.explained_variance_ratio)}"]
        lines += [f"{lab:>11} {c[0]:+8.2f} {c[1]:+8.2f}" for lab, c in zip(r.labels, r.coords, strict=False)]
    elif args.pca:
        r = geometry.embedding_pca(model, args.pca)
        lines = [f"explained variance: {', '.join(f'{v:.3f}' for v in r.explained_variance_ratio)}"]
        lines += [
            f"{lab!r:>14} {c[0]:+8.3f} {c[1]:+8.3f}" for lab, c in zip(r.labels, r.coords, strict=False)
        ]
    else:
        r = geometry.nearest_neighbours(model, args.token, k=args.k)
        lines = [f"{t!r:>16} {i:6d} {c:.4f}" for t, i, c in r.neighbours]
    return _emit(args, r, lines)


def _steer(args):
    from neuroscope.analysis import steering
    from neuroscope.analysis._util import load_data

    model = _model(args)
    data = load_data(args.data)
    vec = steering.steering_vector(model, data["positive"], data["negative"], args.layer)
    r = steering.steering_sweep(
        model,
        vec,
        args.layer,
        data["neutral"],
        data["positive_words"],
        data["negative_words"],
        alphas=[float(a) for a in args.alphas.split(",")],
        n_generate=args.generate,
    )
    lines = [f"{'alpha':>6} {'margin':>8} {'Δ':>8}  95% CI"]
    lines += [
        f"{a:6.2f} {m:8.3f} {d:+8.3f}  [{c[0]:+.3f}, {c[1]:+.3f}]"
        for a, m, d, c in zip(r.alphas, r.margin, r.delta, r.delta_ci, strict=False)
    ]
    for a, g in r.generations.items():
        lines.append(f"alpha {a}: {g[0]!r}")
    return _emit(args, r, lines)


def _experiment(args):
    from neuroscope.analysis._util import load_data
    from neuroscope.analysis.experiments import ContrastiveConfig, contrastive_experiment, write_report

    model = _model(args)
    data = load_data(args.data)
    cfg = ContrastiveConfig(
        statistic=args.statistic,
        k=args.k,
        n_random=args.n_random,
        heldout_frac=args.heldout_frac,
        seed=args.seed,
    )
    r = contrastive_experiment(model, data["target"], data["baseline"], cfg)
    paths = write_report(
        r,
        args.out,
        title=f"Contrastive experiment: {args.data}",
        description=data.get("description", ""),
        model_name=model.cfg.name,
        plotlyjs="cdn" if args.small_figures else True,
    )
    lines = [
        f"top heads {r.top_heads}; held-out Δ log-prob {r.effect:.4f} [{r.effect_ci[0]:.4f}, {r.effect_ci[1]:.4f}]; "
        f"random {r.random_mean:.4f}; p = {r.p_value:.4g}",
        f"wrote {paths['json']} and {paths['markdown']}",
    ]
    return _emit(args, r, lines)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("lens", help="logit lens: top tokens per layer, KL to the final distribution")
    p.add_argument("prompt")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--tuned", default=None, help="a tuned lens file saved by TunedLens.save")
    _common(p)
    p.set_defaults(func=_lens)

    p = subparsers.add_parser(
        "attention", help="attention patterns of a prompt, or head classification on random repeated tokens"
    )
    p.add_argument(
        "prompt", nargs="?", default=None, help="omit to classify heads on seeded random repeated sequences"
    )
    p.add_argument("--n-seqs", type=int, default=8)
    p.add_argument("--half-len", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--ablate", type=int, default=0, help="also zero-ablate the top-k induction heads vs k random heads"
    )
    p.add_argument("--draws", type=int, default=20)
    _common(p)
    p.set_defaults(func=_attention)

    p = subparsers.add_parser("dla", help="direct logit attribution of every head and MLP")
    p.add_argument("prompt")
    p.add_argument("--answer", required=True)
    p.add_argument("--wrong", default=None)
    p.add_argument("--position", type=int, default=-1)
    p.add_argument("--top", type=int, default=15)
    _common(p)
    p.set_defaults(func=_dla)

    p = subparsers.add_parser("attribute", help="token attribution: integrated gradients or gradient × input")
    p.add_argument("prompt")
    p.add_argument("--answer", required=True)
    p.add_argument("--wrong", default=None)
    p.add_argument("--method", choices=["ig", "gxi"], default="ig")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument(
        "--baseline", default="mean", help="mean | zero | pad | a reference prompt of the same token length"
    )
    _common(p)
    p.set_defaults(func=_attribute)

    p = subparsers.add_parser("patch", help="activation / attribution patching (default: the IOI example)")
    p.add_argument("--clean", default=None)
    p.add_argument("--corrupted", default=None)
    p.add_argument("--answer", default=None)
    p.add_argument("--wrong", default=None)
    p.add_argument(
        "--site",
        default="resid_pre",
        choices=["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "z_pos"],
    )
    p.add_argument(
        "--method",
        choices=["batched", "attribution", "path"],
        default="batched",
        help="batched: activation patching of --site (each patch exact; many per forward, each computed from "
        "its layer and position on); attribution: its first-order estimate; path: path patching of heads "
        "(--senders to --receivers, every other head frozen)",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="patches per forward (at the prompt's full length)"
    )
    p.add_argument(
        "--senders",
        nargs="+",
        default=None,
        metavar="L.H[,L.H...]",
        help="path: sender sets, one per item (default: every head on its own, a layer x head map)",
    )
    p.add_argument(
        "--receivers",
        nargs="+",
        default=None,
        metavar="L.H.q|k|v",
        help="path: receiver inputs (a KV head for k/v); default: the logits, through the MLPs",
    )
    _common(p)
    p.set_defaults(func=_patch)

    p = subparsers.add_parser("neurons", help="max-activating examples and statistics of a neuron")
    p.add_argument("--hook", required=True, help="e.g. blocks.10.mlp.hook_post")
    p.add_argument("--neuron", type=int, required=True)
    p.add_argument(
        "--texts", default=None, help="a .json list / {'texts': [...]} or a text file (one per line)"
    )
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--window", type=int, default=8)
    _common(p)
    p.set_defaults(func=_neurons)

    p = subparsers.add_parser(
        "probe",
        help="linear probe on any hook with a shuffled-label control: any labelled token set (--labels), "
        "or the example task 'is this token a digit'",
    )
    p.add_argument("--hook", default="blocks.15.hook_resid_pre")
    p.add_argument("--texts", default=None, help="texts for the digit task (default: the shipped set)")
    p.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help='labelled tokens, JSON Lines or a JSON list: {"text": ..., "label": L} (the last token; '
        '"position": P picks another) or {"text": ..., "token_labels": [[P, L], ...]}',
    )
    p.add_argument("--seed", type=int, default=0)
    _common(p)
    p.set_defaults(func=_probe)

    p = subparsers.add_parser(
        "geometry", help="embedding nearest neighbours, embedding PCA, residual trajectory PCA"
    )
    p.add_argument("--token", default=" king")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--pca", nargs="+", default=None, help="tokens for an embedding PCA")
    p.add_argument("--trajectory", default=None, help="a prompt: PCA of its last token across layers")
    _common(p)
    p.set_defaults(func=_geometry)

    p = subparsers.add_parser("steer", help="difference-of-means steering vector and an alpha sweep")
    p.add_argument("--data", default="sentiment", help="shipped set name or a JSON file")
    p.add_argument("--layer", type=int, default=10)
    p.add_argument("--alphas", default="-2,-1,0,1,2")
    p.add_argument("--generate", type=int, default=1)
    _common(p)
    p.set_defaults(func=_steer)

    p = subparsers.add_parser(
        "experiment", help="the contrastive experiment: Δ per head → rank → ablate on held-out prompts"
    )
    p.add_argument(
        "--data", default="contrastive_copying", help="shipped set name or a JSON file with target/baseline"
    )
    p.add_argument("--statistic", default="z_norm", choices=["z_norm", "attn_to_answer"])
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--n-random", type=int, default=100)
    p.add_argument("--heldout-frac", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiment_out", help="folder for result.json, report.md and figures")
    p.add_argument(
        "--small-figures", action="store_true", help="link plotly.js from its CDN instead of inlining it"
    )
    _common(p)
    p.set_defaults(func=_experiment)
