"""Click-to-logits latency of the workbench: WebSocket round trips for random head ablations on smollm2-135m.

``run()`` serves the app in-process, opens one WebSocket like the UI, caches the plain run of a 32-token
prompt, then sends >= 200 requests each ablating one random head and times send -> reply on the client.
Timed in the same run, on the model worker's own thread (same torch threading as the served forwards), in
blocks interleaved with the toggles so that all see the same machine load:

- the bare Hugging Face forward of the prompt (no hooks, no ablation): what one forward costs;
- like for like, the same ablation recomputed without the cached plain run: a hooked forward of the whole
  prompt from the embedding with ``Ablate(heads=[(layer, head)])`` (the work a workbench without the cache
  would do per click).

Settings: the workbench as ``make run`` starts it (``Settings()``'s thread count: half the cores, at least
one) and torch's own default (every core), each under a parallel CPU load (one busy-loop process per core,
as on a shared machine), plus the default without added load.
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


def _recompute(model: Any, ids: Any, heads: list[tuple[int, int]]) -> list[float]:
    """The ablated forward without the cached plain run: the whole prompt through the hooked model."""
    from neuroscope.interventions import Ablate

    out = []
    for head in heads:
        t0 = time.perf_counter()
        model(ids, interventions=[Ablate(heads=[head])])
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _burn(stop: Any) -> None:
    """A busy loop on one core until ``stop`` is set (the parallel CPU load)."""
    x = 1.0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1.000001) % 7.0


class CPULoad:
    """``n`` busy-loop processes (default: one per core) for the duration of a ``with`` block."""

    def __init__(self, n: int | None = None):
        import multiprocessing as mp

        self.n = n if n is not None else (os.cpu_count() or 1)
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()
        self._procs: list[Any] = []

    def __enter__(self) -> CPULoad:
        self._procs = [
            self._ctx.Process(target=_burn, args=(self._stop,), daemon=True) for _ in range(self.n)
        ]
        for p in self._procs:
            p.start()
        time.sleep(2.0)  # let them start spinning
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


DEFAULT = "default"  # the thread setting `make run` uses: Settings()'s own


def _measure(
    model: Any, prompt: str, n_toggles: int, n_bare: int, seed: int, threads: int | str | None, load: int
) -> dict[str, Any]:
    import torch
    from websockets.sync.client import connect

    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    ids = model.to_tokens(prompt)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    bare: list[float] = []
    recompute: list[float] = []
    given = {} if threads == DEFAULT else {"torch_threads": threads}
    app = create_app(Settings(model=model.cfg.name, **given), model=model)
    worker = app.state.worker
    blocks = 10
    with (
        CPULoad(load) if load else _nothing(),
        serve_in_thread(app) as base,
        connect(base.replace("http", "ws") + "/ws", open_timeout=60) as ws,
    ):
        load_before = os.getloadavg()[0]
        ws.send(json.dumps({"id": 0, "prompt": prompt}))
        first = json.loads(ws.recv(timeout=300))  # the plain run: cached from here on
        assert first["type"] == "result", first
        worker.run_sync(_bare, model, ids, 2)  # warm-up on the worker thread
        worker.run_sync(_recompute, model, ids, [(0, 0)])
        threads_used = worker.run_sync(torch.get_num_threads)
        i = 0
        for block in range(blocks):
            bare += worker.run_sync(_bare, model, ids, n_bare // blocks)
            heads = [(rng.randrange(n_layers), rng.randrange(n_heads)) for _ in range(n_bare // blocks)]
            recompute += worker.run_sync(_recompute, model, ids, heads)
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
        load_after = os.getloadavg()[0]
    b = _summary(bare)
    rc = _summary(recompute)
    s_all = _summary([r["ms"] for r in rows])
    s_low = _summary([r["ms"] for r in rows if r["layer"] < n_layers // 2])
    s_high = _summary([r["ms"] for r in rows if r["layer"] >= n_layers // 2])
    return {
        "threads_setting": "Settings() default (make run)" if threads == DEFAULT else threads,
        "torch_threads": threads_used,
        "parallel_load_processes": load,
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],  # before, after
        "first_request_ms_uncached": round(first["timings"]["total_ms"], 2),
        "bare_hf_forward": b,
        "recompute_without_cache": rc,
        "ws_click_to_logits": s_all,
        "ws_first_half_layers": s_low,
        "ws_second_half_layers": s_high,
        "server_compute": _summary([r["server_ms"] for r in rows]),
        "ratios": {
            "p50_over_bare_p50": round(s_all["p50_ms"] / b["p50_ms"], 3),
            "second_half_p50_over_bare_p50": round(s_high["p50_ms"] / b["p50_ms"], 3),
            # like for like: the same ablation, served from the cache vs recomputed from the embedding
            "p50_over_recompute_p50": round(s_all["p50_ms"] / rc["p50_ms"], 3),
            "server_compute_p50_over_recompute_p50": round(
                _summary([r["server_ms"] for r in rows])["p50_ms"] / rc["p50_ms"], 3
            ),
            "recompute_p50_over_bare_p50": round(rc["p50_ms"] / b["p50_ms"], 3),
        },
        "targets": {
            "p95_below_400ms": s_all["p95_ms"] < 400,
            "p50_at_most_1.25x_bare": s_all["p50_ms"] <= 1.25 * b["p50_ms"],
            "second_half_p50_at_most_0.7x_bare": s_high["p50_ms"] <= 0.7 * b["p50_ms"],
        },
    }


def _nothing() -> Any:
    import contextlib

    return contextlib.nullcontext()


def run(
    model_name: str = "smollm2-135m",
    n_toggles: int = 200,
    n_bare: int = 40,
    n_tokens: int = 32,
    seed: int = 0,
    out: Path | None = RESULTS,
    settings: tuple[tuple[int | str | None, int], ...] | None = None,
) -> dict[str, Any]:
    """One measurement per (torch thread setting, parallel load processes): ``"default"`` is what ``make run``
    uses (``Settings()``), a number that many threads. Default: the ``make run`` setting and torch's own
    default (every core), each under one busy-loop process per core, then the ``make run`` setting without
    added load."""
    from benchmarks.common import machine_info
    from neuroscope.models.loading import load_model

    cores = os.cpu_count() or 1
    # torch's own default is every core; named explicitly, since torch.set_num_threads in an earlier run
    # of this process would otherwise carry over
    settings = settings or ((DEFAULT, cores), (cores, cores), (DEFAULT, 0))
    model = load_model(model_name)
    prompt = prompt_of_length(model, n_tokens)
    runs = [_measure(model, prompt, n_toggles, n_bare, seed, t, load) for t, load in settings]
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
        "targets_met_by": {
            k: [
                f"{r['threads_setting']} ({r['torch_threads']} threads), load {r['parallel_load_processes']}"
                for r in runs
                if r["targets"][k]
            ]
            for k in runs[0]["targets"]
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
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    print(json.dumps(run(a.model, a.toggles, out=Path(a.out)), indent=2))
