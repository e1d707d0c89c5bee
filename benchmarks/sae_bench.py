"""SAE benchmark -> benchmarks/results/sae.json.

1. SAE training, ours (Lightning module + Trainer + streaming Parquet loader) vs SAELens's ``SAETrainer`` fed
   the same activations from the same loader (same rows: special tokens and massive-activation outliers left
   out), at the same TopK k, expansion, batch size, learning rate, schedule and token budget. SAELens is set up
   as its documentation describes (``sae_lens/config.py``, ``saes/topk_sae.py``): inputs normalised to mean
   squared norm d_in (``normalize_activations="expected_average_only_in"``), its default decoder
   initialisation (row norm 0.1) and ``rescale_acts_by_decoder_norm``, sparse latents in the decode where they
   are faster (``use_sparse_activations``, "worthwhile if using float32", measured here), AuxK at Gao et al.'s
   1/32, and a dead-latent window of the same number of tokens as ours (its default, 1,000 steps, is longer
   than these runs, so AuxK would never start). Both start from the same b_dec (the geometric median of the
   inputs; SAELens 6 has no option for it, so it is set on the module before ``fit``; a zero start, as
   shipped, is run once and reported). Its SAE is saved with ``save_inference_model`` and both SAEs are scored
   by the same held-out FVU code; SAELens's own forward is checked against the loaded copy.
   Rounds alternate in a shuffled order; speed is tokens/s from the call to a trained SAE (setup included)
   and of the fit alone; quality is reported beside it for every round.
2. Feature table / top-context latency from the library (``FeatureStore``) for the trained SAE.

Activations: ``acts/l15`` + ``acts/l15-heldout`` (smollm2-135m layer 15 resid_post, README commands) when
recorded, else a small smollm2-135m recording made here. ``SAE_BENCH_TOKENS`` sets training tokens per run,
``SAE_BENCH_ROUNDS`` the rounds.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import interleaved, summary, write

REPO = Path(__file__).resolve().parents[1]
K, EXPANSION, BATCH = 32, 8, 4096


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
        tcfg=TrainConfig(lr=lr, batch_size=BATCH, max_tokens=tokens, progress=False),
        out=out,
        arch="topk",
        k=K,
        expansion=EXPANSION,
    )
    wall = time.perf_counter() - t0
    return sae, {
        "tokens": r.tokens,
        "steps": r.steps,
        "fit_seconds": r.seconds,
        "wall_seconds": wall,
        "tokens_per_s": r.tokens / wall,
        "fit_tokens_per_s": r.tokens / r.seconds,
    }


def saelens_config(d: int, tokens: int, lr: float, dead_tokens: int, sparse: bool) -> tuple[Any, Any]:
    """SAELens's TopK SAE and trainer config, as its docs describe, matched to ours where both have a knob."""
    from neuroscope.sae.saelens_compat import import_sae_lens

    import_sae_lens()
    from sae_lens import TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    sae_cfg = TopKTrainingSAEConfig(
        d_in=d,
        d_sae=EXPANSION * d,
        k=K,
        aux_loss_coefficient=1 / 32,
        normalize_activations="expected_average_only_in",
        use_sparse_activations=sparse,
        # decoder_init_norm=0.1 and rescale_acts_by_decoder_norm=True: SAELens's TopK defaults, kept
    )
    steps = tokens // BATCH
    trainer_cfg = SAETrainerConfig(
        total_training_samples=tokens,
        train_batch_size_samples=BATCH,
        lr=lr,
        # ours: constant, then linear decay to zero over the last 20% of steps; SAELens's "constant"
        # scheduler with lr_decay_steps does the same
        lr_end=lr,  # unused by the constant scheduler, but the trainer asserts it is set
        lr_scheduler_name="constant",
        lr_decay_steps=steps - int(0.8 * steps),
        dead_feature_window=max(1, dead_tokens // BATCH),
        # ours estimates its input scale from 16k tokens; the same here (4 batches of 4096)
        n_batches_for_norm_estimate=4,
        logger=LoggingConfig(log_to_wandb=False),
    )
    return sae_cfg, trainer_cfg


def _saelens(
    train: Path, tokens: int, lr: float, out: Path, sparse: bool, median_b_dec: bool = True
) -> tuple[Any, dict[str, Any]]:
    from neuroscope.sae.config import TrainConfig
    from neuroscope.sae.saelens_compat import import_sae_lens

    import_sae_lens()
    from sae_lens import SAETrainer, TopKTrainingSAE

    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.io import load_sae
    from neuroscope.sae.loader import ActivationStream, outlier_norm

    t0 = time.perf_counter()
    store = ActivationStore(train)
    d = store.d()
    # the same rows ours trains on: special tokens and massive-activation outliers left out
    stream = ActivationStream(store, BATCH, max_norm=outlier_norm(store.sample(16_384), 10.0))

    def provider():
        while True:
            yield from stream

    sae_cfg, trainer_cfg = saelens_config(d, tokens, lr, TrainConfig().dead_tokens, sparse)
    torch.manual_seed(0)  # SAELens draws its initial weights from torch's global generator
    sae = TopKTrainingSAE(sae_cfg)
    data = provider()
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=data)
    if median_b_dec:
        # SAELens 6 starts b_dec at zero and has no option for another start; ours starts at the geometric
        # median of the (normalised) inputs, which short runs depend on. Same start for both: SAELens's own
        # scale estimate (what fit() would run first), then b_dec = the geometric median of the same 16k
        # sample ours uses, in SAELens's normalised space.
        from neuroscope.sae.model import geometric_median

        trainer.activation_scaler.estimate_scaling_factor(d, data, trainer_cfg.n_batches_for_norm_estimate)
        sample = store.sample(min(16_384, store.n_tokens), seed=TrainConfig().seed).float()
        sample = sample[sample.norm(dim=-1) <= stream.max_norm] if stream.max_norm else sample
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(sample * trainer.activation_scaler.scaling_factor))
    t1 = time.perf_counter()
    trainer.fit()
    fit = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    n = trainer.n_training_samples
    sae.save_inference_model(str(out))
    ours_copy = load_sae(out)
    # the loaded copy reproduces SAELens's own forward (so the FVU below is SAELens's SAE's)
    x = next(iter(ActivationStream(store, 512, seed=123))).float()
    with torch.no_grad():
        sae.eval()
        diff = float((ours_copy(x) - sae.decode(sae.encode(x))).abs().max() / x.abs().max())
    return ours_copy, {
        "tokens": n,
        "steps": trainer.n_training_steps,
        "fit_seconds": fit,
        "wall_seconds": wall,
        "tokens_per_s": n / wall,
        "fit_tokens_per_s": n / fit,
        "loaded_copy_max_rel_diff": diff,
        "dead_latents_at_end_saelens_count": int(trainer.dead_neurons.sum()),
    }


def _sparse_faster(train: Path, lr: float, tmp: Path) -> dict[str, Any]:
    """SAELens's two decode paths on a short run each (its docs leave the choice to the user); a path that
    fails here is reported and not used."""
    out: dict[str, Any] = {}
    for sparse in (False, True):
        key = "sparse" if sparse else "dense"
        try:
            _, r = _saelens(train, 8 * BATCH, lr, tmp / f"probe-{key}", sparse)
            out[f"{key}_fit_tokens_per_s"] = r["fit_tokens_per_s"]
        except Exception as e:  # reported, not hidden
            out[f"{key}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    dense, sparse_tps = out.get("dense_fit_tokens_per_s", 0.0), out.get("sparse_fit_tokens_per_s", 0.0)
    out["use_sparse"] = sparse_tps > dense
    return out


def bench_training(
    train: Path, held: Path, tokens: int, tmp: Path, rounds: int = 3, sparse: bool | None = None
) -> dict[str, Any]:
    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.config import SAEConfig, default_lr
    from neuroscope.sae.evaluate import reconstruction_stats
    from neuroscope.sae.loader import outlier_norm

    d = ActivationStore(train).d()
    lr = default_lr(SAEConfig(d_in=d, d_sae=EXPANSION * d, k=K))
    choice = _sparse_faster(train, lr, tmp) if sparse is None else {"use_sparse": sparse, "given": True}
    heldout = ActivationStore(held)
    max_norm = outlier_norm(heldout.sample(16_384), 10.0)

    def quality(sae: Any) -> dict[str, Any]:
        st = reconstruction_stats(sae, heldout, max_norm=max_norm)
        return {k: st[k] for k in ("fvu", "l0", "dead_fraction")}

    runs: dict[str, list[dict[str, Any]]] = {"neuroscope": [], "sae_lens": []}
    rng = random.Random(0)
    for i in range(rounds):
        order = ["neuroscope", "sae_lens"]
        rng.shuffle(order)
        for name in order:
            if name == "neuroscope":
                sae, r = _ours(train, tokens, lr, tmp / f"ours{i}")
            else:
                sae, r = _saelens(train, tokens, lr, tmp / f"saelens{i}", choice["use_sparse"])
            runs[name].append({"round": i, **r, "heldout": quality(sae)})
    # SAELens exactly as shipped (b_dec starting at zero), once, for the record: what the start costs
    shipped_sae, shipped = _saelens(train, tokens, lr, tmp / "saelens-shipped", choice["use_sparse"], False)
    shipped["heldout"] = quality(shipped_sae)
    per_round = [
        o["tokens_per_s"] / s["tokens_per_s"]
        for o, s in zip(runs["neuroscope"], runs["sae_lens"], strict=True)
    ]
    fit_round = [
        o["fit_tokens_per_s"] / s["fit_tokens_per_s"]
        for o, s in zip(runs["neuroscope"], runs["sae_lens"], strict=True)
    ]
    fvu = {k: statistics.median(r["heldout"]["fvu"] for r in v) for k, v in runs.items()}
    return {
        "config": {
            "arch": "topk",
            "k": K,
            "expansion": EXPANSION,
            "d_in": d,
            "batch_size": BATCH,
            "lr": lr,
            "schedule": "constant, linear decay to 0 over the last 20% of steps (both)",
            "tokens_per_run": tokens,
            "rounds": rounds,
            "torch_threads": torch.get_num_threads(),
            "sae_lens": {
                "normalize_activations": "expected_average_only_in",
                "decoder_init_norm": 0.1,
                "rescale_acts_by_decoder_norm": True,
                "aux_loss_coefficient": 1 / 32,
                "dead_feature_window_steps": max(1, 100_000 // BATCH),
                "n_batches_for_norm_estimate": 4,
                "use_sparse_activations": choice["use_sparse"],
                "sparse_vs_dense_probe": choice,
                "b_dec": "set before fit to the geometric median of the same 16k-token sample ours starts from, "
                "in SAELens's normalised space (SAELens 6 starts at zero and has no option for it); the "
                "zero start is run once too (sae_lens_zero_b_dec_once)",
            },
        },
        "runs": runs,
        "sae_lens_zero_b_dec_once": shipped,
        "median_tokens_per_s": {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()},
        "ratio_ours_to_sae_lens_per_round": per_round,
        "ratio_ours_to_sae_lens": statistics.median(per_round),
        "fit_only_ratio_ours_to_sae_lens": statistics.median(fit_round),
        "median_heldout_fvu": fvu,
        "sae_lens_fvu_over_ours": fvu["sae_lens"] / fvu["neuroscope"],
        "quality_within_10_percent": fvu["sae_lens"] <= 1.1 * fvu["neuroscope"],
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
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        train, held, real = _stores(tmp)
        tokens = int(os.environ.get("SAE_BENCH_TOKENS", "262144" if real else "131072"))
        rounds = int(os.environ.get("SAE_BENCH_ROUNDS", "3"))
        tr = bench_training(train, held, tokens, tmp, rounds)
        payload["training"] = {"acts": str(train), "real_acceptance_recording": real, **tr}
        payload["features"] = bench_features(Path(tr["ours_sae"]), held, tmp)
    payload["summary"] = {
        "training_tokens_per_s_ratio_ours_to_sae_lens": payload["training"]["ratio_ours_to_sae_lens"],
        "training_tokens_per_s": payload["training"]["median_tokens_per_s"],
        "heldout_fvu": payload["training"]["median_heldout_fvu"],
        "sae_lens_fvu_over_ours": payload["training"]["sae_lens_fvu_over_ours"],
        "feature_latency_max_median_ms": payload["features"]["max_median_ms"],
    }
    write("sae", payload)
    return payload


if __name__ == "__main__":
    import json

    print(json.dumps(run()["summary"], indent=2))
