"""Synthetic ground truth -> benchmarks/results/sae_bench.json["synthetic"] and docs/sae/bench/mcc_vs_l0.png.

Every registered architecture, ours and SAELens's trainer (for the architectures SAELens has), on one
seeded draw from the shipped ``default`` synthetic config: the same activations, width, batch size, token
budget and target L0s (``neuroscope.sae.bench.synthetic.run_synthetic``, the function behind
``neuroscope sae-bench synthetic``). Other keys of sae_bench.json (the real-model section) are kept.

``SAE_BENCH_CONFIG`` picks another config (name or file), ``SAE_BENCH_ARCHS`` a comma-separated subset.

``--saelens-at-our-lr``: a sensitivity check added to the same file afterwards. SAELens's documented
learning rate (3e-4) is tuned for SynthSAEBench's 200k steps; this reruns SAELens's TopK and BatchTopK at
the middle target L0 with the learning rate our trainer used, on the same draw, to separate the trainer
from the learning rate.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, machine_info

REPO = Path(__file__).resolve().parents[1]
FIGURE = REPO / "docs/sae/bench/mcc_vs_l0.png"


def saelens_at_our_lr() -> int:
    from neuroscope.sae.bench.config import load_config
    from neuroscope.sae.bench.synthetic import generate, train_saelens

    path = RESULTS / "sae_bench.json"
    doc = json.loads(path.read_text())
    cfg = load_config(os.environ.get("SAE_BENCH_CONFIG", "default"))
    target = cfg.l0s[len(cfg.l0s) // 2]
    before = machine_info()["load_average_1_5_15"]
    data = generate(cfg)
    rows = []
    for arch in ("topk", "batchtopk"):
        ours = next(
            r for r in doc["synthetic"]["runs"]
            if r["trainer"] == "neuroscope" and r["arch"] == arch and r["target_l0"] == target
        )  # fmt: skip
        run = train_saelens(data, cfg, arch, target, lr=ours["lr"])
        print(json.dumps({"arch": arch, "lr": run.lr, "mcc": run.mcc, "fvu": run.fvu}), file=sys.stderr)
        rows.append(run.to_dict())
    doc["synthetic"]["saelens_at_our_lr"] = {
        "command": "python -m benchmarks.sae_bench_synthetic --saelens-at-our-lr",
        "target_l0": target,
        "runs": rows,
        "load_average_before": before,
        "load_average_after": machine_info()["load_average_1_5_15"],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def main() -> int:
    from neuroscope.sae.bench.config import load_config
    from neuroscope.sae.bench.synthetic import run_synthetic

    cfg = load_config(os.environ.get("SAE_BENCH_CONFIG", "default"))
    archs = [a for a in os.environ.get("SAE_BENCH_ARCHS", "").split(",") if a] or None
    before = machine_info()
    t0 = time.perf_counter()
    result = run_synthetic(cfg, archs=archs, log=lambda s: print(s, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    after = machine_info()
    result.machine = {
        **before,
        "load_average_before": before["load_average_1_5_15"],
        "load_average_after": after["load_average_1_5_15"],
        "wall_seconds": round(wall, 1),
    }
    path = RESULTS / "sae_bench.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc["synthetic"] = {
        "command": "python -m benchmarks.sae_bench_synthetic",
        "cli_equivalent": "neuroscope sae-bench synthetic --config default --out FILE.json --figure FILE.png",
        **result.to_dict(),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    result.figure().savefig(FIGURE, dpi=120)
    print(
        json.dumps({"best": doc["synthetic"]["best"], "comparison": doc["synthetic"]["comparison"]}, indent=2)
    )
    return 0


def figure_only() -> int:
    """Redraw docs/sae/bench/mcc_vs_l0.png from the saved result."""
    from neuroscope.sae.bench.synthetic import SynthBenchResult

    doc = json.loads((RESULTS / "sae_bench.json").read_text())
    SynthBenchResult.from_dict(doc["synthetic"]).figure().savefig(FIGURE, dpi=120)
    return 0


if __name__ == "__main__":
    if "--saelens-at-our-lr" in sys.argv:
        sys.exit(saelens_at_our_lr())
    sys.exit(figure_only() if "--figure-only" in sys.argv else main())
