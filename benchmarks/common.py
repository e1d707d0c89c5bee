"""Shared benchmark plumbing: interleaved timing, machine info, result files."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine_info() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # a shared 2-core machine: the load beside a number says whether to trust it
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int = 15, warmup: int = 2, seed: int = 0
) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, round-robin in a shuffled order per round, so machine noise
    and position in the round hit all of them alike. Sample ``i`` of every function comes from round ``i``."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    rng = random.Random(seed)
    keys = list(fns)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        rng.shuffle(keys)
        for k in keys:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def paired_ratios(times: dict[str, list[float]], base: str) -> dict[str, dict[str, float]]:
    """Per round, each function's time over the baseline's time in the same round; median and IQR.

    Rounds are seconds apart, so a burst of load from another process inflates both sides of a pair:
    the paired ratio is steadier than a ratio of medians taken over the whole run."""
    out = {}
    for k, samples in times.items():
        r = [a / b for a, b in zip(samples, times[base], strict=True)]
        q = statistics.quantiles(r, n=4)
        out[k] = {
            "median": statistics.median(r),
            "q1": q[0],
            "q3": q[2],
            "min_time_ratio": min(samples) / min(times[base]),
        }
    return out


def summary(samples: list[float]) -> dict:
    q = statistics.quantiles(samples, n=4)
    return {
        "median_ms": 1e3 * statistics.median(samples),
        "q1_ms": 1e3 * q[0],
        "q3_ms": 1e3 * q[2],
        "n": len(samples),
    }


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2) + "\n")
    return path
