"""Synthetic ground truth -> benchmarks/results/sae_bench.json["synthetic"] and docs/sae/bench/mcc_vs_l0.png.

Every registered architecture, ours and SAELens's trainer (for the architectures SAELens has), on one
seeded draw from the shipped ``default`` synthetic config: the same activations, width, batch size, token
budget and target L0s (``neuroscope.sae.bench.synthetic.run_synthetic``, the function behind
``neuroscope sae-bench synthetic``). Other keys of sae_bench.json (the real-model section) are kept.

``SAE_BENCH_CONFIG`` picks another config (name or file), ``SAE_BENCH_ARCHS`` a comma-separated subset.
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


if __name__ == "__main__":
    sys.exit(main())
