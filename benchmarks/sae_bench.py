"""SAE benchmark -> benchmarks/results/sae.json.

1. Recording (``benchmarks.record_bench.run()``, the recorder's own benchmark) merged in when present.
2. SAE training tokens/s, ours (Lightning module + Trainer + streaming Parquet loader) vs SAELens's
   ``SAETrainer`` fed the same activations from the same loader, same hyperparameters (TopK, k=32,
   expansion 8, batch 4096, same LR, Adam, inputs normalised to mean squared norm d_in), alternated
   ours/SAELens/ours/SAELens; both SAEs then evaluated by the same held-out FVU code.
3. Feature table / top-context latency from the library (``FeatureStore``) for the trained SAE.

Activations: ``acts/l15`` + ``acts/l15-heldout`` (smollm2-135m layer 15 resid_post) when recorded,
else a small smollm2-135m recording made here. ``SAE_BENCH_TOKENS`` sets training tokens per run.
"""

from __future__ import annotations

import importlib
import os
import random
import statistics
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import interleaved, summary, write

REPO = Path(__file__).resolve().parents[1]


def _stores(tmp: Path) -> tuple[Path, Path, bool]:
    train, held = REPO / "acts/l15", REPO / "acts/l15-heldout"
    if (train / "manifest.json").exists() and (held / "manifest.json").exists():
        from neuroscope.record.reader import ActivationStore

        if ActivationStore(train).complete and ActivationStore(held).complete:
            return train, held, True
    import neuroscope as ns
    from neuroscope.record.datasets import DEFAULT_CORPUS_DIR, ensure_default_corpus
    from neuroscope.record.writer import TraceConfig, record

    data = str(ensure_default_corpus(DEFAULT_CORPUS_DIR))
    model = ns.load_model("smollm2-135m", device="cpu")
    hooks = ("blocks.15.hook_resid_post",)
    record(model, TraceConfig(hooks=hooks, data=data, tokens=32_768), tmp / "train", progress=False)
    record(
        model,
        TraceConfig(hooks=hooks, data=data, split="heldout", tokens=8192),
        tmp / "held",
        progress=False,
    )
    return tmp / "train", tmp / "held", False


def _ours(train: Path, tokens: int, lr: float, out: Path) -> tuple[Any, dict[str, Any]]:
    from neuroscope.sae.config import TrainConfig
    from neuroscope.sae.train import train_sae

    t0 = time.perf_counter()
    sae, r = train_sae(
        train,
        tcfg=TrainConfig(lr=lr, batch_size=4096, max_tokens=tokens, progress=False),
        out=out,
        arch="topk",
        k=32,
        expansion=8,
    )
    wall = time.perf_counter() - t0
    return sae, {
        "tokens": r.tokens,
        "fit_seconds": r.seconds,
        "tokens_per_s": r.tokens / r.seconds,
        "wall_seconds_with_setup": wall,
    }


def _saelens(train: Path, tokens: int, lr: float) -> tuple[Any, dict[str, Any]]:
    from neuroscope.sae.saelens_compat import import_sae_lens

    import_sae_lens()
    from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.loader import ActivationStream, outlier_norm

    store = ActivationStore(train)
    d = store.d()
    # the same rows ours trains on: special tokens and massive-activation outliers left out
    stream = ActivationStream(store, 4096, max_norm=outlier_norm(store.sample(16_384), 10.0))

    def provider():
        while True:
            yield from stream

    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(
            d_in=d,
            d_sae=8 * d,
            k=32,
            aux_loss_coefficient=1 / 32,
            normalize_activations="expected_average_only_in",
        )
    )
    cfg = SAETrainerConfig(
        total_training_samples=tokens,
        train_batch_size_samples=4096,
        lr=lr,
        lr_end=lr,
        n_batches_for_norm_estimate=4,
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=provider())
    t0 = time.perf_counter()
    trainer.fit()
    secs = time.perf_counter() - t0
    return sae, {
        "tokens": trainer.n_training_samples,
        "fit_seconds": secs,
        "tokens_per_s": trainer.n_training_samples / secs,
    }


def bench_training(train: Path, held: Path, tokens: int, tmp: Path, rounds: int = 2) -> dict[str, Any]:
    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.config import SAEConfig, default_lr
    from neuroscope.sae.evaluate import reconstruction_stats
    from neuroscope.sae.io import load_sae
    from neuroscope.sae.loader import outlier_norm

    d = ActivationStore(train).d()
    lr = default_lr(SAEConfig(d_in=d, d_sae=8 * d, k=32))
    runs: dict[str, list[dict[str, Any]]] = {"neuroscope": [], "sae_lens": []}
    last: dict[str, Any] = {}
    for i in range(rounds):
        sae, r = _ours(train, tokens, lr, tmp / f"ours{i}")
        runs["neuroscope"].append(r)
        last["neuroscope"] = sae
        sl, r = _saelens(train, tokens, lr)
        runs["sae_lens"].append(r)
        sl.save_model(str(tmp / "saelens"))
        last["sae_lens"] = load_sae(tmp / "saelens")
    heldout = ActivationStore(held)
    max_norm = outlier_norm(heldout.sample(16_384), 10.0)
    quality = {}
    for name, sae in last.items():
        st = reconstruction_stats(sae, heldout, max_norm=max_norm)
        quality[name] = {k: st[k] for k in ("fvu", "l0", "dead_fraction")}
    med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    return {
        "config": {
            "arch": "topk",
            "k": 32,
            "expansion": 8,
            "d_in": d,
            "batch_size": 4096,
            "lr": lr,
            "tokens_per_run": tokens,
            "rounds": rounds,
            "torch_threads": torch.get_num_threads(),
        },
        "runs": runs,
        "median_tokens_per_s": med,
        "ratio_ours_to_sae_lens": med["neuroscope"] / med["sae_lens"],
        "heldout_quality": quality,
        "ours_sae": str(tmp / f"ours{rounds - 1}"),
    }


def bench_features(sae_dir: Path, held: Path, tmp: Path) -> dict[str, Any]:
    import neuroscope as ns
    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.features import FeatureConfig, FeatureStore, compute_features
    from neuroscope.sae.io import load_sae

    store = ActivationStore(held)
    model = ns.load_model(store.manifest["model"], device="cpu")
    sae = load_sae(sae_dir)
    t0 = time.perf_counter()
    out = compute_features(sae, store, model, tmp / "features", FeatureConfig())
    compute_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fs = FeatureStore(out)
    load_s = time.perf_counter() - t0
    rng = random.Random(0)
    ids = [rng.randrange(len(fs)) for _ in range(64)]
    it = iter(ids * 100)
    times = interleaved(
        {
            "table_page_by_id": lambda: fs.table(offset=rng.randrange(0, len(fs) - 50), limit=50),
            "table_page_sorted_by_density": lambda: fs.table(
                offset=0, limit=50, sort="density", descending=True
            ),
            "table_search_top_tokens": lambda: fs.table(limit=50, search="the"),
            "feature_top_contexts": lambda: fs.contexts(next(it)),
            "feature_detail": lambda: fs.feature(next(it)),
        },
        repeats=50,
        warmup=2,
    )
    lat = {k: summary(v) for k, v in times.items()}
    return {
        "n_features": len(fs),
        "tokens": store.n_tokens,
        "compute_seconds": compute_s,
        "load_seconds": load_s,
        "latency": lat,
        "max_median_ms": max(v["median_ms"] for v in lat.values()),
        "target_ms": 50,
    }


def run() -> dict[str, Any]:
    torch.set_num_threads(int(os.environ.get("SAE_BENCH_THREADS", "1")))
    payload: dict[str, Any] = {}
    try:
        rec = importlib.import_module("benchmarks.record_bench")
        payload["record"] = rec.run()
    except ModuleNotFoundError as e:
        payload["record"] = {"skipped": f"benchmarks.record_bench not available ({e})"}
    except Exception:
        payload["record"] = {"error": traceback.format_exc()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        train, held, real = _stores(tmp)
        tokens = int(os.environ.get("SAE_BENCH_TOKENS", "98304" if real else "65536"))
        tr = bench_training(train, held, tokens, tmp)
        payload["training"] = {"acts": str(train), "real_acceptance_recording": real, **tr}
        payload["features"] = bench_features(Path(tr["ours_sae"]), held, tmp)
    payload["summary"] = {
        "training_tokens_per_s_ratio_ours_to_sae_lens": payload["training"]["ratio_ours_to_sae_lens"],
        "training_tokens_per_s": payload["training"]["median_tokens_per_s"],
        "feature_latency_max_median_ms": payload["features"]["max_median_ms"],
        "record": payload["record"].get("summary", payload["record"].get("ratio_to_hf", "see record")),
    }
    write("sae", payload)
    return payload


if __name__ == "__main__":
    import json

    print(json.dumps(run()["summary"], indent=2))
