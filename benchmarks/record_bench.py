"""Recorder on smollm2-135m: recording tokens/s against a plain forward on the same text, and peak memory.

Recording at the last layer (29) still skips the final norm and the unembedding (576 x 49152, about a fifth
of the model's multiply-adds), which is why it can beat the plain forward.

Throughput: the same contexts of the default corpus's held-out split go through (a) the plain Hugging Face
forward (logits, no hooks), (b) the whole ``record()`` call (reading and tokenising the text, the hooked
forward stopped after the recorded layer, float16 conversion, Parquet shards, checksums, manifest) at the last
layer (29) and at a middle layer (15), and (c) like for like: the plain Hugging Face forward stopped after
the same layer (a torch forward hook on that decoder layer ends the forward; no final norm, no unembedding).
All five run interleaved round-robin in one process; each ratio is the median over rounds of the plain
forward's time / the recording's time in the same round (tokens/s ratio, > 1 is faster). (b) against (a) is
what recording costs next to running the model; (b) against (c) is what the recorder adds to the same
computation (hooks, the copy to float16, Parquet, checksums, tokenising). Tokenising is counted against the
recorder only, so both ratios are conservative.

Memory: ``neuroscope trace`` in fresh subprocesses for 50k and 200k tokens, each reporting its own peak RSS
(``VmHWM``, which model loading may set) and the peak of RSS sampled every 20 ms while ``record()`` runs.
Layer 0 is recorded so that both finish in about a minute: the forward stops after block 0, while the writer,
the shards and the reading of the corpus (the parts that could grow with the token count) are the same as at
any other layer.

``run()`` writes benchmarks/results/record.json and returns the same dict (``make bench`` /
``python -m benchmarks.run record_bench``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import interleaved, paired_ratios, summary, write

MODEL = "smollm2-135m"


class _Stopped(Exception):
    """Raised by the forward hook that ends a plain forward after a given layer."""


CTX_LEN = 128
BATCH = 8

# The CLI in a fresh process. VmHWM is the whole life's peak, which model loading may set; so RSS is
# also sampled every 20 ms from the moment record() starts (model loaded) to its end.
_CHILD = """
import json, os, sys, threading, time
t0 = time.perf_counter()
page = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20
from neuroscope.record import writer
_record = writer.record
marks = {}
def record(*args, **kwargs):
    marks["start"] = marks["peak"] = rss_mb()
    done = threading.Event()
    def sample():
        while not done.wait(0.02):
            marks["peak"] = max(marks["peak"], rss_mb())
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        return _record(*args, **kwargs)
    finally:
        done.set()
        t.join()
        marks["end"] = rss_mb()
        marks["peak"] = max(marks["peak"], marks["end"])
writer.record = record
from neuroscope.cli import main
rc = main(sys.argv[1:])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
print(json.dumps({"rc": rc, "peak_rss_mb": peak, "marks": marks, "seconds": time.perf_counter() - t0}),
      file=sys.stderr)
"""


def _trace_peak(data: str, tokens: int, out: Path, threads: int) -> dict:
    argv = [
        "trace",
        "--model",
        MODEL,
        "--layer",
        "0",
        "--hook",
        "resid_post",
        "--data",
        data,
        "--tokens",
        str(tokens),
        "--out",
        str(out),
        "--threads",
        str(threads),
        "--no-progress",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"trace for {tokens} tokens failed:\n{proc.stderr[-3000:]}")
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    result = json.loads(proc.stdout)
    marks = stats["marks"]
    return {
        "tokens": result["tokens"],
        "peak_rss_mb": round(stats["peak_rss_mb"], 1),
        "rss_at_record_start_mb": round(marks["start"], 1),
        "recording_peak_rss_mb": round(marks["peak"], 1),
        "rss_at_record_end_mb": round(marks["end"], 1),
        "seconds": round(stats["seconds"], 2),
        "trace_tokens_per_s": result["tokens_per_s"],
    }


def memory(data: str, threads: int = 1, sizes: tuple[int, int] = (50_000, 200_000)) -> dict:
    with tempfile.TemporaryDirectory(prefix="record-mem-") as tmp:
        runs = [_trace_peak(data, n, Path(tmp) / f"t{n}", threads) for n in sizes]
    small, large = runs
    growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    # the part that could grow with the token count: what record() adds on top of the loaded model
    added = [r["recording_peak_rss_mb"] - r["rss_at_record_start_mb"] for r in runs]
    return {
        "runs": runs,
        "hook": "blocks.0.hook_resid_post",
        "peak_rss_growth": round(growth, 4),
        "recording_peak_rss_growth": round(
            large["recording_peak_rss_mb"] / small["recording_peak_rss_mb"] - 1, 4
        ),
        "rss_added_by_recording_mb": [round(a, 1) for a in added],
        "target": "< 0.20",
        "meets_target": abs(growth) < 0.20
        and abs(large["recording_peak_rss_mb"] / small["recording_peak_rss_mb"] - 1) < 0.20,
    }


def throughput(data: str, contexts: int = 8, repeats: int = 5) -> dict:
    import neuroscope as ns
    from neuroscope.record.datasets import iter_contexts, load_documents, resolve_data
    from neuroscope.record.writer import TraceConfig, record

    model = ns.load_model(MODEL, device="cpu")
    n_layers = model.cfg.n_layers
    src = resolve_data(data, "heldout")
    ids = torch.stack(list(iter_contexts(load_documents(src), model.tokenizer, CTX_LEN, contexts)))
    batches = ids.split(BATCH)
    tokens = ids.numel()

    def plain() -> None:
        with torch.inference_mode():
            for b in batches:
                model.hf_model(input_ids=b, use_cache=False)

    def plain_to(layer: int):
        """The plain forward, ended by a torch forward hook right after decoder layer ``layer``."""
        block = model.hf_model.model.layers[layer]

        def stop(module, inputs, output):
            raise _Stopped

        def go() -> None:
            handle = block.register_forward_hook(stop)
            try:
                with torch.inference_mode():
                    for b in batches:
                        with contextlib.suppress(_Stopped):
                            model.hf_model(input_ids=b, use_cache=False)
            finally:
                handle.remove()

        return go

    tmp = Path(tempfile.mkdtemp(prefix="record-speed-"))

    def recorder(layer: int):
        cfg = TraceConfig(
            hooks=(f"blocks.{layer}.hook_resid_post",),
            data=data,
            split="heldout",
            tokens=tokens,
            ctx_len=CTX_LEN,
            batch_size=BATCH,
        )

        def go() -> None:
            out = tmp / f"l{layer}"
            shutil.rmtree(out, ignore_errors=True)
            record(model, cfg, out, progress=False)

        return go

    fns = {
        "plain_forward": plain,
        "plain_forward_to_last_layer": plain_to(n_layers - 1),
        "plain_forward_to_middle_layer": plain_to(15),
        "record_last_layer": recorder(n_layers - 1),
        "record_middle_layer": recorder(15),
    }
    try:
        times = interleaved(fns, repeats=repeats, warmup=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = paired_ratios(times, "plain_forward")
    per_s = {k: tokens / summary(v)["median_ms"] * 1e3 for k, v in times.items()}

    def cmp(key: str, target: float, layer: int, stopped: str) -> dict:
        r = ratios[key]
        like = paired_ratios({key: times[key], stopped: times[stopped]}, stopped)[key]
        # time ratios invert into tokens/s ratios (q1 and q3 swap)
        return {
            "hook": f"blocks.{layer}.hook_resid_post",
            "tokens_per_s_ratio": round(1 / r["median"], 3),
            "tokens_per_s_ratio_iqr": [round(1 / r["q3"], 3), round(1 / r["q1"], 3)],
            "recording_tokens_per_s": round(per_s[key], 1),
            "plain_forward_tokens_per_s": round(per_s["plain_forward"], 1),
            "target": f">= {target}" if target < 1 else f"> {target}",
            "meets_target": (1 / r["median"]) >= target if target < 1 else (1 / r["median"]) > target,
            "like_for_like": {
                "vs": f"the plain Hugging Face forward stopped after layer {layer} (no hooks, nothing written)",
                "tokens_per_s_ratio": round(1 / like["median"], 3),
                "tokens_per_s_ratio_iqr": [round(1 / like["q3"], 3), round(1 / like["q1"], 3)],
                "plain_forward_stopped_tokens_per_s": round(per_s[stopped], 1),
            },
        }

    return {
        "tokens_per_run": tokens,
        "ctx_len": CTX_LEN,
        "batch_size": BATCH,
        "rounds": repeats,
        "last_layer": cmp("record_last_layer", 0.85, n_layers - 1, "plain_forward_to_last_layer"),
        "middle_layer": cmp("record_middle_layer", 1.0, 15, "plain_forward_to_middle_layer"),
        "times": {k: summary(v) for k, v in times.items()},
    }


def run(
    threads: int = 1,
    contexts: int = 8,
    repeats: int = 5,
    memory_sizes: tuple[int, int] = (50_000, 200_000),
    write_result: bool = True,
) -> dict:
    """The comparisons and the memory result on smollm2-135m (about 3-4 minutes with one thread); writes
    benchmarks/results/record.json (``make bench`` runs it as a suite of its own)."""
    from neuroscope.record.datasets import DEFAULT_CORPUS_DIR, ensure_default_corpus

    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data = str(ensure_default_corpus(DEFAULT_CORPUS_DIR))
        mem = memory(data, threads, memory_sizes)
        speed = throughput(data, contexts, repeats)
    finally:
        torch.set_num_threads(old_threads)
    result = {
        "model": MODEL,
        "corpus": "python3-doc prose (data/corpus), held-out split for speed, train split for memory",
        "torch_threads": threads,
        "recording_vs_plain_forward": speed,
        "memory": mem,
        "summary": {
            "last_layer_tokens_per_s_ratio": speed["last_layer"]["tokens_per_s_ratio"],
            "middle_layer_tokens_per_s_ratio": speed["middle_layer"]["tokens_per_s_ratio"],
            "last_layer_like_for_like_ratio": speed["last_layer"]["like_for_like"]["tokens_per_s_ratio"],
            "middle_layer_like_for_like_ratio": speed["middle_layer"]["like_for_like"]["tokens_per_s_ratio"],
            "peak_rss_mb_50k_vs_200k": [r["peak_rss_mb"] for r in mem["runs"]],
            "peak_rss_growth": mem["peak_rss_growth"],
            "recording_peak_rss_growth": mem["recording_peak_rss_growth"],
            "rss_added_by_recording_mb": mem["rss_added_by_recording_mb"],
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if write_result:
        write("record", result)
    return result


if __name__ == "__main__":
    result = run()
    print(json.dumps(result["summary"], indent=2))
