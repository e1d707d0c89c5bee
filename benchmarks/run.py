"""`make bench`: run every benchmark and write benchmarks/results/*.json (each with machine info)."""

from __future__ import annotations

import importlib
import json
import sys
import traceback

# (module, what it writes); a module that is absent is reported, not silently skipped
SUITES = [
    ("benchmarks.overhead", "overhead.json"),
    ("benchmarks.analysis_bench", "analysis.json"),
    ("benchmarks.record_bench", "record.json"),
    ("benchmarks.sae_bench", "sae.json"),
    ("benchmarks.latency_bench", "latency.json"),
    ("benchmarks.scale_bench", "scale.json"),
    ("benchmarks.features_bench", "features.json"),
    ("benchmarks.onnx_bench", "onnx.json"),
    ("benchmarks.attacks_bench", "attacks.json"),
    ("benchmarks.attack_latency", "attack_latency.json"),
    ("benchmarks.graphs_bench", "graphs.json"),
    ("benchmarks.organisms_bench", "organisms.json"),
]


def main(argv: list[str]) -> int:
    only = set(argv)
    failed = []
    for module, output in SUITES:
        short = module.split(".")[-1]
        if only and short not in only:
            continue
        print(f"== {module} -> benchmarks/results/{output}", flush=True)
        try:
            result = importlib.import_module(module).run()
            print(
                json.dumps(result.get("ratio_to_hf", result.get("summary", {})), indent=2)[:2000], flush=True
            )
        except Exception:
            traceback.print_exc()
            failed.append(module)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
