"""Real model, ours vs SAELens -> benchmarks/results/sae_bench.json["real"] and docs/sae/bench/fvu_vs_l0_real.png.

smollm2-135m layer-15 ``resid_post`` activations recorded once (``acts/l15``, ``acts/l15-heldout``; see
docs/sae/bench/README.md for the commands) are read into memory once. Special tokens and massive-activation
outliers (norm > 10 x the median, the library's ``outlier_norm``) are dropped, and the first ``--tokens`` rows
are the training tensor, the same for every run. Per architecture, our trainer (``train_sae_on_tensor``) and
SAELens's ``SAETrainer`` (``neuroscope.sae.bench.saelens_runs``, the code the synthetic benchmark uses) train at
the same width, batch size, learning rate, tokens and target L0; the two alternate (ours first for even
architectures, SAELens's first for odd). SAELens gets the same inputs normalised as ours are (mean squared norm
d_in, ``input_scale``, as SAELens's ``expected_average_only_in``); the scale is folded back into its saved SAE
(``SAE.fold_input_scale``, as SAELens does on save). Then every SAE goes through the library's evaluation
(``evaluate_sae``: held-out FVU, L0, dead latents, CE loss recovered) and, with ``--downstream``,
``sae-bench real``'s metrics (``run_real_bench``: sparse probing, SCR, TPP, first-letter absorption).

The machine is shared (2 cores): parts run as separate processes (``--part NAME --archs a,b``), each writing
``OUT/NAME.json``; ``--merge`` gathers the parts (and ``OUT/downstream.json``) into sae_bench.json["real"],
keeping every other key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine_info

REPO = Path(__file__).resolve().parents[1]
FIGURE = REPO / "docs/sae/bench/fvu_vs_l0_real.png"
HOOK = "blocks.15.hook_resid_post"
MODEL = "smollm2-135m"
WIDTHS = (128, 512, 2048)  # Matryoshka prefixes (d_sae is appended), as the sanity runs
# ours: JumpReLU has no L0 target, only a penalty; these gave L0 78 with target-free training (sanity run
# jumprelu2: threshold 0.5, coefficient 5) and the coefficient is raised in proportion for L0 ~ 64
JUMPRELU = {"jumprelu_init_threshold": 0.5, "l0_coefficient": 6.0}


def widths(d_sae: int) -> tuple[int, ...]:
    return tuple(w for w in WIDTHS if w < d_sae)


def load_tensor(path: str, tokens: int) -> tuple[Any, dict[str, Any]]:
    import torch

    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.loader import outlier_norm

    store = ActivationStore(path)
    batch = store.read_all(HOOK)
    x = batch.acts.float()
    keep = ~torch.isin(batch.token_id, torch.tensor(store.special_token_ids, dtype=batch.token_id.dtype))
    x = x[keep]
    max_norm = outlier_norm(store.sample(16_384, hook=HOOK).float(), 10.0)
    if max_norm is not None:
        x = x[x.norm(dim=-1) <= max_norm]
    n_usable = int(x.shape[0])
    x = x[:tokens].contiguous()
    return x, {
        "recorded_tokens": store.n_tokens,
        "usable_tokens": n_usable,
        "training_tokens": int(x.shape[0]),
    }


def ours(x: Any, arch: str, l0: int, d_sae: int, batch: int, lr: float, out: Path) -> dict[str, Any]:
    from neuroscope.sae.config import SAEConfig, TrainConfig
    from neuroscope.sae.train import train_sae_on_tensor

    extra: dict[str, Any] = dict(JUMPRELU) if arch == "jumprelu" else {}
    if arch == "matryoshka":
        extra["matryoshka_widths"] = widths(d_sae)
    cfg = SAEConfig(d_in=x.shape[1], d_sae=d_sae, arch=arch, k=l0, hook_name=HOOK, model_name=MODEL, **extra)
    tcfg = TrainConfig(batch_size=batch, epochs=1, lr=lr, seed=0, progress=False)
    t0 = time.perf_counter()
    sae, res = train_sae_on_tensor(x, cfg, tcfg, out=out)
    wall = time.perf_counter() - t0
    settings = {k: v for k, v in sae.cfg.to_dict().items() if k not in ("hook_name", "model_name", "dtype")}
    return {
        "tokens": res.tokens,
        "fit_seconds": res.seconds,
        "call_seconds": round(wall, 3),
        "settings": settings,
    }


def saelens(x: Any, arch: str, l0: int, d_sae: int, batch: int, lr: float, out: Path) -> dict[str, Any]:
    from neuroscope.sae.bench import saelens_runs
    from neuroscope.sae.config import TrainConfig
    from neuroscope.sae.io import load_sae, save_sae
    from neuroscope.sae.train import input_scale

    t0 = time.perf_counter()
    scale = input_scale(x[:16_384])
    run = saelens_runs.train(
        x * scale,
        arch,
        d_sae,
        l0,
        x.shape[0],
        batch,
        0,
        widths=widths(d_sae) if arch == "matryoshka" else (),
        dead_tokens=TrainConfig().dead_tokens,
        lr=lr,
    )
    wall = time.perf_counter() - t0
    run.sae.cfg.metadata.hook_name = HOOK
    run.sae.cfg.metadata.model_name = MODEL
    with tempfile.TemporaryDirectory() as tmp:
        run.sae.save_model(tmp)
        sae = load_sae(tmp)
    sae.fold_input_scale(scale)
    save_sae(sae, out)
    return {
        "tokens": run.tokens,
        "fit_seconds": round(run.seconds, 3),
        "call_seconds": round(wall, 3),
        "input_scale": scale,
        "settings": run.settings,
    }


def part(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {**machine_info(), "load_average_before": machine_info()["load_average_1_5_15"]}
    x, data = load_tensor(args.acts, args.tokens)
    runs: list[dict[str, Any]] = []
    for i, arch in enumerate(args.archs.split(",")):
        order = ("neuroscope", "saelens") if (i + args.offset) % 2 == 0 else ("saelens", "neuroscope")
        for trainer in order:
            where = out / "saes" / f"{arch}-{trainer}"
            load = os.getloadavg()
            fn = ours if trainer == "neuroscope" else saelens
            r = fn(x, arch, args.l0, args.d_sae, args.batch_size, args.lr, where)
            r.update(
                trainer=trainer,
                arch=arch,
                target_l0=args.l0,
                d_sae=args.d_sae,
                batch_size=args.batch_size,
                lr=args.lr,
                sae=str(where),
                tokens_per_s=round(r["tokens"] / r["fit_seconds"], 1),
                load_average_1_5_15_at_start=[round(v, 2) for v in load],
                load_average_1_5_15_at_end=[round(v, 2) for v in os.getloadavg()],
            )
            print(
                json.dumps({k: r[k] for k in ("arch", "trainer", "tokens_per_s")}),
                file=sys.stderr,
                flush=True,
            )
            runs.append(r)
            (out / f"{args.part}.json").write_text(json.dumps({"data": data, "runs": runs}, indent=2))
    if not args.no_eval:
        evaluate(runs, args)
    info["load_average_after"] = machine_info()["load_average_1_5_15"]
    (out / f"{args.part}.json").write_text(
        json.dumps({"data": data, "machine": info, "runs": runs}, indent=2)
    )
    return 0


def evaluate(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import neuroscope as ns
    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.evaluate import evaluate_sae
    from neuroscope.sae.io import load_sae

    held = ActivationStore(args.heldout)
    model = ns.load_model(MODEL, device="cpu")
    for r in runs:
        t0 = time.perf_counter()
        ev = evaluate_sae(load_sae(r["sae"]), held, model, ce_contexts=args.ce_contexts, name=r["sae"])
        r["eval"] = {k: v for k, v in ev.to_dict().items() if k not in ("sae", "hook", "d_in", "d_sae")}
        r["eval_seconds"] = round(time.perf_counter() - t0, 1)


def downstream(args: argparse.Namespace) -> int:
    import neuroscope as ns
    from neuroscope.sae.bench.real import RealBenchConfig, load_bench_saes, run_real_bench

    out = Path(args.out)
    only = [a for a in args.downstream_archs.split(",") if a]
    paths = sorted(
        str(p)
        for p in (out / "saes").iterdir()
        if p.is_dir() and (not only or p.name.rsplit("-", 1)[0] in only)
    )
    model = ns.load_model(MODEL, device="cpu")
    cfg = RealBenchConfig(per_class=args.per_class, ctx_len=args.ctx_len, absorption_words=args.words)
    name = "downstream"
    if args.absorption_only:  # the smallest set for the probing step, which the run needs anyway
        cfg = RealBenchConfig(sets=("sentiment",), scr=False, tpp=False, absorption_words=args.words)
        name = "absorption"
    before = machine_info()["load_average_1_5_15"]
    res = run_real_bench(model, load_bench_saes(paths, model), cfg)
    doc = {
        **res.to_dict(),
        "load_average_before": before,
        "load_average_after": machine_info()["load_average_1_5_15"],
    }
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2))
    return 0


def merge(args: argparse.Namespace) -> int:
    out = Path(args.out)
    parts = {
        p.stem: json.loads(p.read_text())
        for p in sorted(out.glob("*.json"))
        if p.stem not in ("downstream", "absorption")
    }
    every = [r for p in parts.values() for r in p["runs"]]
    runs = [r for r in every if "eval" in r]
    path = RESULTS / "sae_bench.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    real: dict[str, Any] = {
        "command": "see docs/sae/bench/README.md, 'Real model: ours vs SAELens'",
        "data": next(iter(parts.values()))["data"],
        "machine": {k: p.get("machine", {}) for k, p in parts.items()},
        "runs": runs,
        "comparison": compare(runs),
        # timing-only repeats (--no-eval), and the speed ratio over every round of each architecture
        "timing_rounds": [r for r in every if "eval" not in r],
        "speed_all_rounds": speed(every),
    }
    ds = out / "downstream.json"
    if ds.exists():
        real["downstream"] = json.loads(ds.read_text())
    ab = out / "absorption.json"
    if ab.exists():
        real["absorption"] = json.loads(ab.read_text())
    doc["real"] = real
    path.write_text(json.dumps(doc, indent=2) + "\n")
    figure(runs).savefig(FIGURE, dpi=120)
    print(json.dumps(real["comparison"], indent=2))
    return 0


def table(real: dict[str, Any]) -> str:
    """The README's table, from sae_bench.json["real"] (one row per SAE, downstream columns where run)."""
    down = {r["sae"]: dict(r) for r in real.get("downstream", {}).get("table", [])}
    for r in real.get("absorption", {}).get("table", []):  # the larger absorption run replaces the small one
        if r["sae"] in down:
            down[r["sae"]].update(
                absorption_fraction=r.get("absorption_fraction"), full_absorption=r.get("full_absorption")
            )
    cols = [
        "arch", "trainer", "tokens", "L0", "FVU", "FVU incl. outliers", "dead %", "CE recovered",
        "fit s", "tokens/s", "load (1 min)", "probe k=1", "probe k=2", "probe k=5", "SCR@20", "TPP@20",
        "absorption", "full absorption",
    ]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(real["runs"], key=lambda r: (r["arch"], r["trainer"])):
        e, d = r["eval"], down.get(Path(r["sae"]).name, {})
        f = lambda v, n=3: "–" if v is None else f"{v:.{n}f}"  # noqa: E731
        cells = [
            r["arch"], "NeuroScope" if r["trainer"] == "neuroscope" else "SAELens", str(r["tokens"]),
            f(e["l0"], 1), f(e["fvu"]), f(e["fvu_including_outliers"]), f(100 * e["dead_fraction"], 1),
            f(e["ce_loss_recovered"], 4), f(r["fit_seconds"], 0), f(r["tokens_per_s"], 0),
            f(r["load_average_1_5_15_at_start"][0], 1), f(d.get("probe_top_1")), f(d.get("probe_top_2")),
            f(d.get("probe_top_5")), f(d.get("scr_20")), f(d.get("tpp_20")), f(d.get("absorption_fraction")),
            f(d.get("full_absorption")),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    import statistics

    out: dict[str, Any] = {}
    for arch in dict.fromkeys(r["arch"] for r in runs):
        tps = {
            t: [r["tokens_per_s"] for r in runs if r["arch"] == arch and r["trainer"] == t]
            for t in ("neuroscope", "saelens")
        }
        if all(tps.values()):
            out[arch] = {
                "rounds": len(tps["neuroscope"]),
                "tokens_per_s": tps,
                "ratio_of_medians": round(
                    statistics.median(tps["neuroscope"]) / statistics.median(tps["saelens"]), 2
                ),
            }
    return out


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        if r["trainer"] != "neuroscope":
            continue
        peer = next((p for p in runs if p["trainer"] == "saelens" and p["arch"] == r["arch"]), None)
        if peer is None or "eval" not in r or "eval" not in peer:
            continue
        a, b = r["eval"], peer["eval"]
        rows.append(
            {
                "arch": r["arch"],
                "speedup": round(r["tokens_per_s"] / peer["tokens_per_s"], 2),
                "fvu_ours": round(a["fvu"], 4),
                "fvu_saelens": round(b["fvu"], 4),
                "fvu_within_10pct": abs(a["fvu"] - b["fvu"]) <= 0.1 * b["fvu"],
                "l0_ours": round(a["l0"], 1),
                "l0_saelens": round(b["l0"], 1),
                "ce_recovered_ours": round(a["ce_loss_recovered"], 4),
                "ce_recovered_saelens": round(b["ce_loss_recovered"], 4),
            }
        )
    return rows


def figure(runs: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    colours = dict(
        zip(("topk", "batchtopk", "matryoshka", "jumprelu"), ("C0", "C1", "C2", "C3"), strict=True)
    )
    for r in runs:
        if "eval" in r:
            ours = r["trainer"] == "neuroscope"
            ax.scatter(
                r["eval"]["l0"],
                r["eval"]["fvu"],
                marker="o" if ours else "s",
                s=50,
                facecolors=colours.get(r["arch"], "k") if ours else "none",
                edgecolors=colours.get(r["arch"], "k"),
                label=f"{r['arch']} ({'NeuroScope' if ours else 'SAELens'})",
            )
    ax.set_xscale("log")
    ax.axhline(0.12, ls="--", c="grey", lw=0.8)
    ax.axvline(64, ls=":", c="grey", lw=0.8)
    ax.set_xlabel("held-out L0 (log)")
    ax.set_ylabel("held-out FVU (outliers left out)")
    ax.set_title("smollm2-135m layer 15, 131k tokens, target L0 64")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--acts", default="acts/l15")
    p.add_argument("--heldout", default="acts/l15-heldout")
    p.add_argument("--out", default="acts/compare")
    p.add_argument("--part", default="all")
    p.add_argument("--archs", default="topk,batchtopk,matryoshka,jumprelu")
    p.add_argument(
        "--offset", type=int, default=0, help="alternation phase (the second part starts with SAELens)"
    )
    p.add_argument("--tokens", type=int, default=131_072)
    p.add_argument("--l0", type=int, default=64)
    p.add_argument("--d-sae", type=int, default=4608)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ce-contexts", type=int, default=16)
    p.add_argument("--downstream", action="store_true")
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--ctx-len", type=int, default=64)
    p.add_argument("--words", type=int, default=400)
    p.add_argument(
        "--downstream-archs", default="", help="comma-separated architectures (default: every SAE)"
    )
    p.add_argument("--merge", action="store_true")
    p.add_argument("--no-eval", action="store_true", help="timing only: train, save, no evaluation")
    p.add_argument("--absorption-only", action="store_true", help="with --downstream: absorption at --words")
    p.add_argument("--table", action="store_true", help="print the README table from sae_bench.json")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.table:
        print(table(json.loads((RESULTS / "sae_bench.json").read_text())["real"]))
        return 0
    if args.merge:
        return merge(args)
    if args.downstream:
        return downstream(args)
    return part(args)


if __name__ == "__main__":
    sys.exit(main())
