"""Click-to-logits latency of the workbench: WebSocket round trips for random head ablations on smollm2-135m.

``run()`` serves the app in-process, opens one WebSocket like the UI, caches the plain run of a 32-token
prompt, then sends >= 200 requests each ablating one random head and times send -> reply on the client.
The bare Hugging Face forward of the same prompt is timed in the same run, on the model worker's own thread
(same torch threading as the served forwards), in blocks interleaved with the toggles so that both see the
same machine load.
Writes ``benchmarks/results/latency.json``. ``python -m benchmarks.latency_bench [--toggles N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
TEXT = (
    "In the small village by the sea, the fishermen rose before dawn to mend their nets, while the children "
    "ran along the harbour wall and the old lighthouse keeper watched the grey clouds gather over the water"
)


def prompt_of_length(model: Any, n_tokens: int) -> str:
    """A natural prompt that tokenizes to exactly ``n_tokens`` tokens."""
    ids = model.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    for cut in range(n_tokens + 4, 0, -1):
        text = model.tokenizer.decode(ids[:cut])
        if model.to_tokens(text).shape[1] == n_tokens:
            return text
    raise RuntimeError(f"could not build a {n_tokens}-token prompt")


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _summary(xs: list[float]) -> dict[str, float]:
    return {
        "n": len(xs),
        "p50_ms": round(_pct(xs, 0.5), 2),
        "p95_ms": round(_pct(xs, 0.95), 2),
        "mean_ms": round(statistics.fmean(xs), 2),
        "min_ms": round(min(xs), 2),
    }


def _bare(model: Any, ids: Any, n: int) -> list[float]:
    import torch

    out = []
    with torch.inference_mode():
        for _ in range(n):
            t0 = time.perf_counter()
            model.hf_model(input_ids=ids, use_cache=False)
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def _measure(
    model: Any, prompt: str, n_toggles: int, n_bare: int, seed: int, threads: int | None
) -> dict[str, Any]:
    import torch
    from websockets.sync.client import connect

    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    load_before = os.getloadavg()[0]
    ids = model.to_tokens(prompt)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    bare: list[float] = []
    app = create_app(Settings(model=model.cfg.name, torch_threads=threads), model=model)
    worker = app.state.worker
    blocks = 10
    with serve_in_thread(app) as base, connect(base.replace("http", "ws") + "/ws", open_timeout=60) as ws:
        ws.send(json.dumps({"id": 0, "prompt": prompt}))
        first = json.loads(ws.recv(timeout=300))  # the plain run: cached from here on
        assert first["type"] == "result", first
        worker.run_sync(_bare, model, ids, 2)  # warm-up on the worker thread
        threads_used = worker.run_sync(torch.get_num_threads)
        i = 0
        for block in range(blocks):
            bare += worker.run_sync(_bare, model, ids, n_bare // blocks)
            for _ in range(n_toggles // blocks + (1 if block < n_toggles % blocks else 0)):
                i += 1
                layer, head = rng.randrange(n_layers), rng.randrange(n_heads)
                t0 = time.perf_counter()
                ws.send(json.dumps({"id": i, "prompt": prompt, "interventions": {"heads": [[layer, head]]}}))
                reply = json.loads(ws.recv(timeout=300))
                ms = (time.perf_counter() - t0) * 1e3
                assert reply["type"] == "result" and reply["id"] == i, reply
                t = reply["timings"]
                rows.append({"layer": layer, "ms": ms, "server_ms": t["compute_ms"]})
    b = _summary(bare)
    s_all = _summary([r["ms"] for r in rows])
    s_low = _summary([r["ms"] for r in rows if r["layer"] < n_layers // 2])
    s_high = _summary([r["ms"] for r in rows if r["layer"] >= n_layers // 2])
    return {
        "torch_threads": threads_used,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after
        "first_request_ms_uncached": round(first["timings"]["total_ms"], 2),
        "bare_hf_forward": b,
        "ws_click_to_logits": s_all,
        "ws_first_half_layers": s_low,
        "ws_second_half_layers": s_high,
        "server_compute": _summary([r["server_ms"] for r in rows]),
        "ratios": {
            "p50_over_bare_p50": round(s_all["p50_ms"] / b["p50_ms"], 3),
            "second_half_p50_over_bare_p50": round(s_high["p50_ms"] / b["p50_ms"], 3),
        },
        "targets": {
            "p95_below_400ms": s_all["p95_ms"] < 400,
            "p50_at_most_1.25x_bare": s_all["p50_ms"] <= 1.25 * b["p50_ms"],
            "second_half_p50_at_most_0.7x_bare": s_high["p50_ms"] <= 0.7 * b["p50_ms"],
        },
    }


def run(
    model_name: str = "smollm2-135m",
    n_toggles: int = 200,
    n_bare: int = 40,
    n_tokens: int = 32,
    seed: int = 0,
    out: Path | None = RESULTS,
    threads: tuple[int | None, ...] = (None, 1),
) -> dict[str, Any]:
    """One measurement per torch thread setting (``None`` = torch's default). On a shared machine the
    default (all cores) suffers badly from OpenMP threads waiting on each other; one thread is robust."""
    from benchmarks.common import machine_info
    from neuroscope.models.loading import load_model

    model = load_model(model_name)
    prompt = prompt_of_length(model, n_tokens)
    runs = [_measure(model, prompt, n_toggles, n_bare, seed, t) for t in threads]
    result = {
        "benchmark": "click-to-logits latency over /ws (one random head ablated per request) vs bare HF forward",
        "model": model_name,
        "prompt_tokens": int(model.to_tokens(prompt).shape[1]),
        "toggles": n_toggles,
        "device": str(model.device),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine_info": machine_info(),
        "runs": runs,
        "targets_met_with_threads": {
            k: [r["torch_threads"] for r in runs if r["targets"][k]] for k in runs[0]["targets"]
        },
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--toggles", type=int, default=200)
    ap.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=None,
        help="torch thread settings to measure (default: torch's, then 1)",
    )
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    print(
        json.dumps(
            run(a.model, a.toggles, out=Path(a.out), threads=tuple(a.threads) if a.threads else (None, 1)),
            indent=2,
        )
    )
