"""Transcoders on smollm2-135m: the training run's timings and the quality of the trained set, into
``benchmarks/results/transcoders.json`` sections ``training`` and ``quality`` (only these; other sections of
the file are kept).

The run itself is the documented CLI command (README / docs/transcoders/README.md)::

    nice -n 5 neuroscope train-transcoders --model smollm2-135m --layers 0-29 --tokens 65536 \
        --d-tc 4608 --k 64 --activation topk --skip --out /work/tcs/smollm2-135m --threads 1

then ``python -m benchmarks.transcoders_train --transcoders /work/tcs/smollm2-135m [--record-seconds S]``
summarises the folder's per-layer training record (seconds, tokens/s, the load average when each layer
finished), its disk use, and runs ``transcoder_quality`` (held-out FVU/L0/dead per layer; CE loss recovered,
top-1 agreement and KL of the whole replacement model with and without error terms). ``--record-seconds``:
the recording pass's wall time as the recorder reported it (the run's log), when the recording was made by
an earlier invocation. The 250k-token / 2 h goal is projected from the measured rates, and labelled so."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine_info

OUT = RESULTS / "transcoders.json"


def _du(path: Path) -> int:
    return int(
        subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    )


def training_section(folder: Path, record_seconds: dict[str, float]) -> dict[str, Any]:
    info = json.loads((folder / "transcoders.json").read_text())
    rows = [info["per_layer"][str(l)] for l in info["layers"]]
    secs = [r["train_seconds"] for r in rows]
    toks = [r["train_tokens"] for r in rows]
    rate = sum(toks) / max(sum(secs), 1e-9)
    rec_tokens = info["training"]["config"]["tokens"]
    rec_rate = rec_tokens / record_seconds["train"] if record_seconds.get("train") else None
    goal_tokens = 250_000
    projected = None
    if rec_rate:
        projected = goal_tokens / rec_rate + len(rows) * goal_tokens / rate
    acts_bytes = _du(folder / "acts") if (folder / "acts").exists() else 0
    train_bytes = _du(folder / "acts" / "train") if (folder / "acts" / "train").exists() else 0
    total_bytes = _du(folder)
    return {
        "model": info["model"],
        "folder": str(folder),
        "config": info["training"]["config"],
        "layers_trained": info["layers"],
        "recording": {
            "tokens_train": rec_tokens,
            "tokens_heldout": info["training"]["config"]["heldout_tokens"],
            "seconds": record_seconds,
            "train_tokens_per_s": None if rec_rate is None else round(rec_rate, 1),
            "why_recorder": "the forward (~100-200 tok/s here) costs more per token than one layer's training "
            "(~300-700 tok/s), so it runs once for all layers; pairs kept in float16 (zstd), each layer then "
            "trains from RAM, and a killed run resumes by shard and by layer",
        },
        "per_layer": [
            {
                k: r[k]
                for k in ("layer", "train_seconds", "train_tokens", "train_tokens_per_s", "load_average")
            }
            for r in rows
        ],
        "train_seconds_total": round(sum(secs), 1),
        "train_seconds_per_layer_median": sorted(secs)[len(secs) // 2],
        "train_tokens_per_s_overall": round(rate, 1),
        "disk_bytes": {
            "recording": acts_bytes,
            "weights_and_rest": total_bytes - acts_bytes,
            "total": total_bytes,
        },
        "goal_250k_tokens_30_layers_2h": {
            "measured_at_250k": False,
            "projected_seconds_from_measured_rates": None if projected is None else round(projected),
            "projected_disk_bytes": None
            if not rec_tokens
            else round(train_bytes * goal_tokens / rec_tokens + (total_bytes - train_bytes)),
            "note": "not run at 250k tokens: the machine's load (see load_average per layer) would not let 250k "
            "finish before the deadline; projected linearly from the rates measured in this run",
        },
    }


def quality_section(folder: Path, model_name: str, ce_contexts: int) -> dict[str, Any]:
    import neuroscope as ns
    from neuroscope.transcoders.quality import QualityConfig, transcoder_quality

    model = ns.load_model(model_name, device="cpu")
    t0 = time.perf_counter()
    q = transcoder_quality(model, folder, QualityConfig(ce_contexts=ce_contexts))
    fvus = [r["fvu"] for r in q.per_layer]
    return {
        **q.to_dict(),
        "seconds": round(time.perf_counter() - t0, 1),
        "goals": {
            "fvu_le_0.2_at_l0_le_64_all_layers": all(r["fvu"] <= 0.2 and r["l0"] <= 64 for r in q.per_layer),
            "layers_meeting_fvu_0.2": sum(f <= 0.2 for f in fvus),
            "fvu_max": max(fvus),
            "fvu_median": sorted(fvus)[len(fvus) // 2],
            "ce_loss_recovered_ge_0.8": (q.whole_model.get("ce_loss_recovered") or 0) >= 0.8,
        },
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transcoders", default="/work/tcs/smollm2-135m")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--record-seconds", type=float, default=None, help="the train split's recording time")
    ap.add_argument("--record-heldout-seconds", type=float, default=None)
    ap.add_argument("--ce-contexts", type=int, default=32)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--note", default="", help="how the run went (kept in the training section)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    folder = Path(args.transcoders)
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    rec = {"train": args.record_seconds, "heldout": args.record_heldout_seconds}
    data["training"] = {"machine": machine_info(), **training_section(folder, rec), "note": args.note}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    if not args.skip_quality:
        data = json.loads(OUT.read_text())
        data["quality"] = {"machine": machine_info(), **quality_section(folder, args.model, args.ce_contexts)}
        OUT.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: data[k] for k in ("training", "quality") if k in data}, indent=2)[:4000])


if __name__ == "__main__":
    main()
