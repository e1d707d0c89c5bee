"""Scaling out on this 2-core machine: Ray recording vs one process, DDP vs one process, quantized loads.

Recording (smollm2-135m, ``blocks.15.hook_resid_post``, the default corpus, float16, 128-token contexts):
the single-process recorder with 2 torch threads, Ray with 1 worker (2 CPUs, 2 threads) and Ray with 2
workers (1 CPU, 1 thread each), all on the same 2 cores, each at two sizes (4,096 and 16,384 tokens), in a
shuffled order per round. End to end, a Ray run also pays for a task that loads the model to describe it and
for every worker loading its own model; the marginal rate ``(16384 - 4096) / (t_16k - t_4k)`` is the
recording speed once that is paid. Ray start-up (``ray.init`` of a local 2-CPU instance) is timed apart; the
Ray runs reuse one instance. Peak memory, sampled every 50 ms: the recording process's RSS for the single
process (model included); for Ray, the summed RSS of the Ray processes (GCS, raylet, agents, the describe task
and the workers, each with its own model), not counting the driver, which in ``trace --ray`` holds no model.

DDP: ``neuroscope train-sae`` on the 16k-token recording, TopK k=32, 8× expansion, global batch 1024, 2
epochs: one process with 1 and 2 threads vs ``--devices 2 --strategy ddp`` (2 gloo processes, 1 thread
each, 512 per process). Wall time of the command and the training loop's tokens/s.

Quantized loads: a fresh process per mode (fp32, int8, nf4) reports load time, RSS added by loading and
after the forwards (fp32 weights are memory-mapped from the safetensors cache, so loading alone adds little
RSS: the pages arrive with the first forward), the process's peak RSS, the weights' bytes, and the median
forward time over 4 x 128 tokens (``SCALE_BENCH_THREADS`` threads, default 2; 5 runs after one warm-up).

``python -m benchmarks.scale_bench quantized`` reruns only that part and updates scale.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write

MODEL = "smollm2-135m"
HOOK = "blocks.15.hook_resid_post"
SIZES = (4096, 16384)
# rounds of every variant (shuffled order per round); SCALE_BENCH_ROUNDS=1 halves the time on a busy machine
ROUNDS = int(os.environ.get("SCALE_BENCH_ROUNDS", "2"))
# torch threads of the quantized-load processes (2 on a quiet machine; 1 is steadier on a loaded one)
THREADS = int(os.environ.get("SCALE_BENCH_THREADS", "2"))


class PeakRSS:
    """Peak RSS (MiB), sampled in a thread: of this process (``what="self"``) or of all its descendants
    (``"children"``: a local Ray instance's GCS, raylet and workers)."""

    def __init__(self, what: str = "self", every: float = 0.05):
        import psutil

        self.proc, self.what, self.every, self.peak = psutil.Process(), what, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> float:
        total = 0
        procs = [self.proc] if self.what == "self" else self.proc.children(recursive=True)
        for p in procs:
            with contextlib.suppress(Exception):  # a worker that just exited
                total += p.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(self.every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cfg(data: str, tokens: int):
    from neuroscope.record.writer import TraceConfig

    return TraceConfig(
        hooks=(HOOK,), data=data, tokens=tokens, ctx_len=128, batch_size=8, shard_tokens=2048, dtype="float16"
    )


def bench_recording(tmp: Path) -> dict[str, Any]:
    import ray
    import torch

    from neuroscope.models.loading import load_model
    from neuroscope.record.datasets import ensure_default_corpus
    from neuroscope.record.distributed import ModelLoad, RayConfig, record_ray
    from neuroscope.record.writer import record

    data = str(ensure_default_corpus().resolve())
    startup = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=False, log_to_driver=False)
        startup.append(time.perf_counter() - t0)
        ray.shutdown()
    torch.set_num_threads(2)
    model = load_model(MODEL, device="cpu")
    ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=False, log_to_driver=False)
    runs: dict[str, dict[int, list[float]]] = {k: {n: [] for n in SIZES} for k in ("single", "ray1", "ray2")}
    peaks: dict[str, float] = {k: 0.0 for k in runs}
    rng = random.Random(0)
    jobs = [(k, n) for k in runs for n in SIZES]
    for r in range(ROUNDS):
        rng.shuffle(jobs)
        for kind, n in jobs:
            out = tmp / f"{kind}-{n}-{r}"
            with PeakRSS("self" if kind == "single" else "children") as mem:
                t0 = time.perf_counter()
                if kind == "single":
                    record(model, _cfg(data, n), out, progress=False)
                else:
                    w = 1 if kind == "ray1" else 2
                    rcfg = RayConfig(workers=w, cpus_per_worker=2 / w, threads_per_worker=2 // w)
                    record_ray(ModelLoad(MODEL, device="cpu"), _cfg(data, n), out, rcfg, progress=False)
                runs[kind][n].append(time.perf_counter() - t0)
            peaks[kind] = max(peaks[kind], mem.peak)
            if n == SIZES[-1] and r == 0 and kind == "ray2":
                shutil.copytree(out, tmp / "acts")  # the DDP benchmark trains on it
            shutil.rmtree(out)
            print(f"  {kind} {n} tokens: {runs[kind][n][-1]:.1f} s", flush=True)
    ray.shutdown()
    small, big = SIZES
    table = {}
    for kind, by_n in runs.items():
        t_small, t_big = statistics.median(by_n[small]), statistics.median(by_n[big])
        table[kind] = {
            "seconds": {str(n): [round(x, 2) for x in v] for n, v in by_n.items()},
            "end_to_end_tokens_per_s": round(big / t_big, 1),
            "marginal_tokens_per_s": round((big - small) / max(t_big - t_small, 1e-9), 1),
            "peak_rss_mb": round(peaks[kind], 1),
        }
    base = table["single"]
    for kind in ("ray1", "ray2"):
        table[kind]["end_to_end_vs_single"] = round(
            table[kind]["end_to_end_tokens_per_s"] / base["end_to_end_tokens_per_s"], 3
        )
        table[kind]["marginal_vs_single"] = round(
            table[kind]["marginal_tokens_per_s"] / base["marginal_tokens_per_s"], 3
        )
    return {
        "rounds": ROUNDS,
        "ray_start_seconds": [round(x, 2) for x in startup],
        "configs": {
            "single": "record() in this process, 2 torch threads",
            "ray1": "record_ray, 1 worker, 2 CPUs, 2 threads (local Ray, 2 CPUs)",
            "ray2": "record_ray, 2 workers, 1 CPU and 1 thread each (local Ray, 2 CPUs)",
        },
        "runs": table,
    }


def _train(acts: Path, out: Path, threads: int, devices: int) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "neuroscope.cli", "train-sae", "--acts", str(acts), "--out", str(out),
        "--k", "32", "--expansion", "8", "--epochs", "2", "--batch-size", str(1024 // devices),
        "--dead-tokens", "8192", "--threads", str(threads), "--no-progress", "--accelerator", "cpu",
    ]  # fmt: skip
    if devices > 1:
        argv += ["--devices", str(devices), "--strategy", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    res = json.loads((out / "training.json").read_text())["result"]
    return {
        "wall_seconds": round(wall, 2),
        "train_seconds": res["seconds"],
        "tokens": res["tokens"],
        "tokens_per_s": res["tokens_per_s"],
        "final_fvu": round(res["final_fvu"], 4),
    }


def bench_ddp(acts: Path, tmp: Path) -> dict[str, Any]:
    setups = {"one_process_1_thread": (1, 1), "one_process_2_threads": (2, 1), "ddp_2_processes": (1, 2)}
    out: dict[str, Any] = {k: [] for k in setups}
    order = list(setups)
    for r in range(ROUNDS):
        random.Random(r).shuffle(order)
        for k in order:
            threads, devices = setups[k]
            out[k].append(_train(acts, tmp / f"sae-{k}-{r}", threads, devices))
            print(f"  {k}: {out[k][-1]}", flush=True)
    med = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in out.items()}
    return {
        "runs": out,
        "median_tokens_per_s": med,
        "ddp_vs_one_process_2_threads": round(med["ddp_2_processes"] / med["one_process_2_threads"], 3),
        "ddp_vs_one_process_1_thread": round(med["ddp_2_processes"] / med["one_process_1_thread"], 3),
    }


_QCHILD = """
import json, sys, time, statistics, torch
torch.set_num_threads(int(sys.argv[2]))
page = __import__("os").sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20
import neuroscope as ns, transformers.modeling_utils
from neuroscope.models.quantize import weight_bytes
mode = sys.argv[1]
before = rss()
t0 = time.perf_counter()
m = ns.load_model("smollm2-135m", device="cpu", quantize=None if mode == "fp32" else mode)
load = time.perf_counter() - t0
after = rss()
ids = torch.randint(100, 40000, (4, 128), generator=torch.Generator().manual_seed(0))
times = []
with torch.inference_mode():
    m(ids)
    for _ in range(5):
        t = time.perf_counter(); m(ids); times.append(time.perf_counter() - t)
with open("/proc/self/status") as f:
    hwm = [int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM")][0]
print(json.dumps({"load_seconds": round(load, 2), "rss_added_mb": round(after - before, 1),
  "rss_added_after_forward_mb": round(rss() - before, 1), "peak_rss_mb": round(hwm, 1),
  "weight_mb": round(weight_bytes(m.hf_model) / 2**20, 1), "forward_ms_4x128": round(1e3 * statistics.median(times), 1),
  "forward_ms_all": [round(1e3 * t, 1) for t in times]}))
"""


QKEYS = (
    "load_seconds",
    "rss_added_mb",
    "rss_added_after_forward_mb",
    "peak_rss_mb",
    "weight_mb",
    "forward_ms_4x128",
)


def bench_quantized() -> dict[str, Any]:
    modes = ["fp32", "int8", "nf4"]
    out: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "HF_HUB_OFFLINE": "1"}
    for r in range(ROUNDS):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            proc = subprocess.run(
                [sys.executable, "-c", _QCHILD, mode, str(THREADS)],
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode:
                raise RuntimeError(proc.stderr[-3000:])
            out[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  {mode}: {out[mode][-1]}", flush=True)
    med = {
        m: {
            k: statistics.median(x[k] for x in v)
            for k in ("load_seconds", "rss_added_mb", "weight_mb", "forward_ms_4x128")
        }
        for m, v in out.items()
    }
    return {
        "runs": out,
        "median": med,
        "vs_fp32": {
            m: {
                "weight_memory": round(med[m]["weight_mb"] / med["fp32"]["weight_mb"], 3),
                "forward_time": round(med[m]["forward_ms_4x128"] / med["fp32"]["forward_ms_4x128"], 3),
            }
            for m in ("int8", "nf4")
        },
        "threads": THREADS,
        "note": "bitsandbytes CPU backend; 4-bit layers kept on the dequantize-then-matmul path "
        "(models.quantize.keep_differentiable), so gradients through them are right",
    }


def run() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        print("recording: single process vs Ray", flush=True)
        recording = bench_recording(tmp)
        print("SAE training: DDP vs one process", flush=True)
        ddp = bench_ddp(tmp / "acts", tmp)
        print("quantized loads", flush=True)
        quant = bench_quantized()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        "ray_start_seconds_median": statistics.median(recording["ray_start_seconds"]),
        "ray1_vs_single_end_to_end": recording["runs"]["ray1"]["end_to_end_vs_single"],
        "ray2_vs_single_end_to_end": recording["runs"]["ray2"]["end_to_end_vs_single"],
        "ray2_vs_single_marginal": recording["runs"]["ray2"]["marginal_vs_single"],
        "ddp_vs_one_process_2_threads": ddp["ddp_vs_one_process_2_threads"],
        "int8_weight_memory_vs_fp32": quant["vs_fp32"]["int8"]["weight_memory"],
        "nf4_weight_memory_vs_fp32": quant["vs_fp32"]["nf4"]["weight_memory"],
        "int8_forward_time_vs_fp32": quant["vs_fp32"]["int8"]["forward_time"],
        "nf4_forward_time_vs_fp32": quant["vs_fp32"]["nf4"]["forward_time"],
    }
    payload = {"summary": summary, "recording": recording, "ddp": ddp, "quantized": quant}
    write("scale", payload)
    return payload


def rerun_quantized() -> dict[str, Any]:
    """Replace the quantized part of an existing scale.json (the recording and DDP parts take longest)."""
    from benchmarks.common import RESULTS, machine_info

    path = RESULTS / "scale.json"
    payload = json.loads(path.read_text())
    quant = bench_quantized()
    payload["quantized"] = quant
    payload["quantized"]["machine"] = machine_info()
    for m in ("int8", "nf4"):
        payload["summary"][f"{m}_weight_memory_vs_fp32"] = quant["vs_fp32"][m]["weight_memory"]
        payload["summary"][f"{m}_forward_time_vs_fp32"] = quant["vs_fp32"][m]["forward_time"]
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


if __name__ == "__main__":
    result = rerun_quantized() if sys.argv[1:] == ["quantized"] else run()
    print(json.dumps(result["summary"], indent=2))
