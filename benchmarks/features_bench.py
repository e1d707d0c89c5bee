"""The feature laboratory on smollm2-135m: toggle → updated logits over the WebSocket (client-side timestamps,
32-token prompts), the adapter switch alone, building the closed-form edit, and the feature table's page /
sort / search through the REST API on a 16k-latent SAE.

The SAE is 16,384 latents at ``blocks.15.hook_resid_post`` (seeded random TopK weights: the table's and the
edit's costs depend on the width and the model, not on training) with a feature store computed over
recorded held-out text of the real corpus. Writes ``benchmarks/results/features.json``.
``python -m benchmarks.features_bench [--toggles N] [--parallel-load N]`` (``--parallel-load 2``: one busy-loop
process per core, as ``latency_bench`` measures under).

A new feature's toggle is answered by the edit's exact hooked form (``ProjectOut``); its LoRA adapter is
built and attached when the model worker has been idle for half a second (``ModelWorker.when_idle``), so
during the back-to-back toggles here most edits are still answered by their hooked form.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "features.json"
HOOK = "blocks.15.hook_resid_post"


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _summary(xs: list[float], digits: int = 3) -> dict[str, float]:
    return {
        "n": len(xs),
        "p50_ms": round(_pct(xs, 0.5), digits),
        "p95_ms": round(_pct(xs, 0.95), digits),
        "mean_ms": round(statistics.fmean(xs), digits),
        "min_ms": round(min(xs), digits),
    }


def _sae_with_store(model: Any, root: Path, corpus: str, tokens: int) -> Path:
    import torch

    from neuroscope.record.writer import TraceConfig, record
    from neuroscope.sae import SAE, SAEConfig, save_sae
    from neuroscope.sae.features import FeatureConfig, compute_features

    cfg = TraceConfig(
        hooks=(HOOK,), data=corpus, split="heldout", tokens=tokens, ctx_len=128, batch_size=8, dtype="float32"
    )
    record(model, cfg, root / "acts", progress=False)
    sae = SAE(
        SAEConfig(
            d_in=model.cfg.d_model, d_sae=16_384, arch="topk", k=64, hook_name=HOOK, model_name=model.cfg.name
        ),
        seed=0,
    )
    with torch.no_grad():
        sae.W_enc.copy_(sae.W_dec.T)  # tied: latents respond to their own directions
    folder = save_sae(sae, root / "l15-16k")
    compute_features(
        sae, root / "acts", model, folder / "features", FeatureConfig(top_contexts=10, n_examples=32)
    )
    return folder


def _get(url: str) -> tuple[float, Any]:
    t0 = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=60).read()
    return (time.perf_counter() - t0) * 1e3, json.loads(body)


def _post(url: str, payload: dict) -> tuple[float, Any]:
    req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    body = urllib.request.urlopen(req, timeout=300).read()
    return (time.perf_counter() - t0) * 1e3, json.loads(body)


def _table(base: str, search_words: list[str], rounds: int, seed: int) -> dict[str, Any]:
    """Interleaved REST calls on the 16k table: first page, a deep page, sorted, searched."""
    rng = random.Random(seed)
    calls = {
        "page_by_id": lambda: f"{base}/api/features/l15-16k/table?offset=0&limit=50&sort=id",
        "deep_page": lambda: (
            f"{base}/api/features/l15-16k/table?offset={rng.randrange(0, 16_000)}&limit=50&sort=id"
        ),
        "sort_by_density": lambda: (
            f"{base}/api/features/l15-16k/table?offset=0&limit=50&sort=density&descending=true"
        ),
        "sort_by_max_activation": lambda: (
            f"{base}/api/features/l15-16k/table?offset=0&limit=50&sort=max_activation&descending=true"
        ),
        "search_top_tokens": lambda: (
            f"{base}/api/features/l15-16k/table?offset=0&limit=50&search={urllib.request.quote(rng.choice(search_words))}"
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    keys = list(calls)
    for k in keys:  # warm-up: the first sort builds its order once
        _get(calls[k]())
    for _ in range(rounds):
        rng.shuffle(keys)
        for k in keys:
            ms, out = _get(calls[k]())
            assert out["rows"] or k == "search_top_tokens"
            times[k].append(ms)
    return {k: _summary(v) for k, v in times.items()}


def run(
    model_name: str = "smollm2-135m",
    n_toggles: int = 120,
    n_tokens: int = 32,
    threads: int = 1,
    seed: int = 0,
    corpus: str = "data/corpus",
    record_tokens: int = 8192,
    out: Path | None = RESULTS,
    parallel_load: int = 0,
) -> dict[str, Any]:
    import torch
    from websockets.sync.client import connect

    from benchmarks.common import machine_info
    from benchmarks.latency_bench import CPULoad, prompt_of_length
    from neuroscope.edits.closed_form import ablation_edit
    from neuroscope.edits.host import EditHost
    from neuroscope.lab.live import LiveEdits
    from neuroscope.models.loading import load_model
    from neuroscope.record.datasets import ensure_default_corpus
    from neuroscope.sae.features import FeatureStore
    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    torch.set_num_threads(threads)
    if corpus == "data/corpus":
        ensure_default_corpus(corpus)
    model = load_model(model_name, device="cpu")
    prompt = prompt_of_length(model, n_tokens)
    root = Path(tempfile.mkdtemp(prefix="features-bench-"))
    t0 = time.perf_counter()
    folder = _sae_with_store(model, root, corpus, record_tokens)
    prep_s = time.perf_counter() - t0
    store = FeatureStore(folder / "features")
    words = sorted({t.strip() for row in store.top_tokens[:2000] for t in row[:3] if len(t.strip()) >= 3})[
        :200
    ]
    app = create_app(
        Settings(model=model_name, saes=(str(folder),), workspace=str(root / "ws"), torch_threads=threads),
        model=model,
    )
    lab = app.state.lab
    sae = lab.get("l15-16k").sae
    rng = random.Random(seed)
    load = [round(__import__("os").getloadavg()[0], 2)]
    toggles_new, toggles_prepared, plain_ws, server_ms = [], [], [], []
    busy = CPULoad(parallel_load) if parallel_load else contextlib.nullcontext()
    with (
        busy,
        serve_in_thread(app) as base,
        connect(base.replace("http", "ws") + "/ws", open_timeout=60) as ws,
    ):
        seq = 0

        def ask(edits: list[str]) -> dict:
            nonlocal seq
            seq += 1
            ws.send(json.dumps({"id": seq, "prompt": prompt, "interventions": {"edits": edits}, "top_k": 10}))
            reply = json.loads(ws.recv(timeout=300))
            assert reply["type"] == "result" and reply["id"] == seq, reply
            return reply

        ask([])  # the plain run, cached from here on
        for _ in range(3):  # warm-up: the first adapter wraps the layers once
            _post(base + "/api/edits", {"sae": "l15-16k", "features": [rng.randrange(16_384)], "rank": 8})
        prepared: list[str] = []
        for i in range(n_toggles):
            # a new feature (the edit is built and attached on the toggle), then a recently prepared one
            t0 = time.perf_counter()
            _, e = _post(
                base + "/api/edits", {"sae": "l15-16k", "features": [rng.randrange(16_384)], "rank": 8}
            )
            r = ask([e["name"]])
            toggles_new.append((time.perf_counter() - t0) * 1e3)
            server_ms.append(r["timings"]["compute_ms"])
            prepared.append(e["name"])
            t0 = time.perf_counter()
            _, e2 = _post(
                base + "/api/edits",
                {
                    "sae": "l15-16k",
                    "features": [int(rng.choice(prepared[-32:]).split(":")[2])],
                    "rank": 8,
                },
            )
            ask([e2["name"]])
            toggles_prepared.append((time.perf_counter() - t0) * 1e3)
            if i % 4 == 0:
                t0 = time.perf_counter()
                ask([])  # untoggle: back to the cached plain run
                plain_ws.append((time.perf_counter() - t0) * 1e3)
        table = _table(base, words, 40, seed)
    load.append(round(__import__("os").getloadavg()[0], 2))

    # the adapter switch alone: what changes between two requests with different prepared edits
    host = EditHost.of(model)
    names = prepared[-8:]  # still attached (the least recently used beyond 64 are detached)
    live = LiveEdits.of(model)
    attached_during_toggles = len(live.edits) - len(live.pending())
    for n in names:  # the server has stopped: attach what its idle time did not
        live.finish(n)
    switch = []
    for k in range(2000):
        t0 = time.perf_counter()
        with host.use([names[k % len(names)]]):
            pass
        switch.append((time.perf_counter() - t0) * 1e3)
    ids = model.to_tokens(prompt)

    def fwd(edits: list[str]) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), host.use(edits):
            model(ids)
        return (time.perf_counter() - t0) * 1e3

    base_fwd, lora_fwd = [], []
    for _ in range(20):
        base_fwd.append(fwd([]))
        lora_fwd.append(fwd([names[0]]))
    # building the closed-form edit (1 feature, rank 8, embedding + 32 projections) and attaching it
    build, attach = [], []
    for j in range(10):
        f = rng.randrange(16_384)
        t0 = time.perf_counter()
        edit = ablation_edit(model, sae, [f], rank=8)
        build.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        host.add(f"bench-{j}", edit)
        attach.append((time.perf_counter() - t0) * 1e3)
    result = {
        "benchmark": "feature lab: toggle -> logits over /ws, adapter switch, closed-form edit, 16k feature table",
        "model": model_name,
        "prompt_tokens": int(ids.shape[1]),
        "torch_threads": threads,
        "sae": {
            "width": 16_384,
            "hook": HOOK,
            "store_tokens": record_tokens,
            "prepare_seconds": round(prep_s, 1),
        },
        "machine_info": machine_info(),
        "load_average_1min_before_after": load,
        "parallel_load_processes": parallel_load,
        "edits_attached_by_idle_time_during_toggles": attached_during_toggles,
        "edits_prepared": len(live.edits),
        "toggle_new_feature_to_logits": _summary(toggles_new, 1),
        "toggle_prepared_edit_to_logits": _summary(toggles_prepared, 1),
        "untoggle_to_plain_logits": _summary(plain_ws, 1),
        "server_compute_of_edited_forward": _summary(server_ms, 1),
        "adapter_switch": _summary(switch, 4),
        "forward_plain_vs_with_lora": {"plain": _summary(base_fwd, 1), "lora": _summary(lora_fwd, 1)},
        "closed_form_build": _summary(build, 1),
        "adapter_attach": _summary(attach, 1),
        "table_rest_16k": table,
        "targets": {
            "toggle_p95_below_400ms": _summary(toggles_new, 1)["p95_ms"] < 400,
            "prepared_toggle_p95_below_400ms": _summary(toggles_prepared, 1)["p95_ms"] < 400,
            "adapter_switch_at_most_10ms": _summary(switch, 4)["p95_ms"] <= 10,
            "table_p95_below_50ms": all(v["p95_ms"] < 50 for v in table.values()),
        },
        "notes": "toggle = POST /api/edits + the WebSocket request naming the edit, timed in the client; a new "
        "feature's edit answers with its exact hooked form (ProjectOut) and its peft adapter is built (closed "
        "form) and attached when the model worker is idle, off the toggle's path; a 'prepared' toggle names a "
        "recent edit again (its adapter if attached by then, else its hooked form); the switch is choosing "
        "the adapter rows of a request (no weights move, nothing is reloaded).",
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return {**result, "summary": result["targets"]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--toggles", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--parallel-load", type=int, default=0, help="busy-loop processes beside the server")
    a = ap.parse_args()
    print(
        json.dumps(
            run(a.model, a.toggles, threads=a.threads, out=Path(a.out), parallel_load=a.parallel_load),
            indent=2,
        )
    )
