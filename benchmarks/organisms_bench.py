"""Organism training cost on smollm2-135m: the two phases of `neuroscope organism backdoor|refusal` timed on a
sample (greedy clean targets for 16 prompts; 6 LoRA steps after one warm-up step), interleaved over rounds,
extrapolated to the default budget (the shipped prompt sets, 150 steps of 8) and set against the 15-minute
target; plus the wall times recorded in the manifests of organisms trained on this machine (models/*).

    python -m benchmarks.run organisms_bench
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, machine_info

SAMPLE_PROMPTS = 16
SAMPLE_STEPS = 6
ROUNDS = 3


def _phase_times(threads: int) -> dict[str, float]:
    from neuroscope.models.loading import load_model
    from neuroscope.organisms import data
    from neuroscope.organisms.generation import PromptFormat
    from neuroscope.organisms.make import clean_examples
    from neuroscope.organisms.train import TrainConfig, train_lora

    torch.set_num_threads(threads)
    cfg = TrainConfig()
    base = load_model("smollm2-135m", device="cpu")
    fmt = PromptFormat.for_tokenizer(base.tokenizer)
    prompts = list(data.questions().train[:SAMPLE_PROMPTS])
    t0 = time.perf_counter()
    examples = clean_examples(base, prompts, fmt, cfg)
    targets = time.perf_counter() - t0
    steps: list[float] = []
    last = [time.perf_counter()]

    def tick(step: int, loss: float) -> None:
        now = time.perf_counter()
        if step > 0:  # step 0 pays for optimizer state allocation
            steps.append(now - last[0])
        last[0] = now

    base.hf_model.set_attn_implementation("sdpa")
    train_lora(
        base.hf_model,
        base.tokenizer,
        base.adapter.layers,
        examples * 2,
        TrainConfig(steps=SAMPLE_STEPS + 1, batch_size=cfg.batch_size),
        fmt,
        tick,
    )
    return {"target_s_per_prompt": targets / len(prompts), "step_s": statistics.median(steps)}


def _trained() -> dict:
    out = {}
    for man in sorted(Path("models").glob("*/organism.json")):
        m = json.loads(man.read_text())
        out[man.parent.name] = {
            k: m.get(k)
            for k in (
                "kind",
                "seconds_targets",
                "seconds_train",
                "torch_threads",
                "load_avg_end",
                "train",
                "examples",
            )
        }
    return out


def run() -> dict:
    from neuroscope.organisms import data
    from neuroscope.organisms.train import TrainConfig

    cfg = TrainConfig()
    q, r = data.questions(), data.refusal_set()
    n_clean = {"backdoor": len(q.train), "refusal": len(q.train) + len(r.borderline_train)}
    rounds = {1: [], 2: []}
    loads = []
    for _ in range(ROUNDS):
        for threads in (1, 2):  # interleaved: both settings see the same stretch of machine load
            rounds[threads].append(_phase_times(threads))
            loads.append(round(os.getloadavg()[0], 2))
    est = {}
    for threads, rs in rounds.items():
        tgt = statistics.median(x["target_s_per_prompt"] for x in rs)
        step = statistics.median(x["step_s"] for x in rs)
        est[f"threads_{threads}"] = {
            "target_s_per_prompt": tgt,
            "step_s": step,
            "step_s_all_rounds": [x["step_s"] for x in rs],
            **{f"{kind}_minutes": (n * tgt + cfg.steps * step) / 60 for kind, n in n_clean.items()},
        }
    result = {
        "machine": machine_info(),
        "load_1min_per_round": loads,
        "budget": {
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "target_tokens": cfg.target_tokens,
            **n_clean,
        },
        "estimate": est,
        "target_minutes": 15,
        "trained_here": _trained(),
        "summary": {
            k: {kk: round(v, 1) for kk, v in e.items() if kk.endswith("minutes")} for k, e in est.items()
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "organisms.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    print(json.dumps(run()["summary"], indent=1))
