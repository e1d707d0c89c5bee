"""ONNX split export of smollm2-135m (split after block 15): export time, file sizes, onnxruntime CPU latency of
a 32-token next-token prediction (part A + part B) vs the PyTorch forward of the same prompt, and the browser's
latency (NeuroScope-Web in headless Chromium, onnxruntime-web wasm) for the same token ids, measured by the page.

Equal work: both sides compute the logits of all 32 positions from the same ids, fp32, CPU, the same number of
intra-op threads (1 and 2 are both measured), interleaved rounds. The export goes to ``models/onnx-bench``
(ignored). Writes ``benchmarks/results/onnx.json``. ``python -m benchmarks.run onnx_bench``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXPORT = ROOT / "models" / "onnx-bench" / "smollm2-135m-split15"
CHROMIUM = "/usr/bin/chromium"


def _cpu(model: Any, ids: np.ndarray, threads: int, repeats: int) -> dict[str, Any]:
    import torch

    from benchmarks.common import interleaved, paired_ratios, summary
    from neuroscope.export.runtime import SplitRunner

    torch.set_num_threads(threads)
    runner = SplitRunner(EXPORT, verify=False, threads=threads)
    x = torch.from_numpy(ids)

    def torch_forward() -> None:
        with torch.no_grad():
            model(x)

    times = interleaved(
        {"pytorch": torch_forward, "onnxruntime": lambda: runner.logits(ids)}, repeats=repeats
    )
    with torch.no_grad():
        diff = float(np.abs(runner.logits(ids)[0] - model(x).numpy()).max())
    return {
        "threads": threads,
        "pytorch": summary(times["pytorch"]),
        "onnxruntime": summary(times["onnxruntime"]),
        "onnxruntime_over_pytorch": paired_ratios(times, "pytorch")["onnxruntime"],
        "max_abs_logit_diff": diff,
    }


def _browser(model: Any, ids: np.ndarray, repeats: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    app = create_app(Settings(model=model.cfg.name, onnx_dir=str(EXPORT)), model=model)
    with serve_in_thread(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.set_default_timeout(600_000)
        t0 = time.perf_counter()
        page.goto(base + "/web/")
        loaded = page.evaluate("() => window.nsweb.ready")
        load_s = time.perf_counter() - t0
        bench = page.evaluate(
            "([ids, n]) => window.nsweb.client.bench(ids, n, 3)", [ids[0].tolist(), repeats]
        )
        browser.close()
    ms = bench["samplesMs"]
    return {
        "engine": "onnxruntime-web (wasm) in headless Chromium, served by the workbench with COOP/COEP",
        "wasm_threads": loaded["threads"],
        "cross_origin_isolated": loaded["isolated"],
        "page_load_and_verify_s": round(loaded["loadMs"] / 1000, 2),
        "page_open_to_ready_s": round(load_s, 2),
        "next_token": {
            "median_ms": statistics.median(ms),
            "q1_ms": statistics.quantiles(ms, n=4)[0],
            "q3_ms": statistics.quantiles(ms, n=4)[2],
            "n": len(ms),
        },
    }


def run(repeats: int = 15) -> dict[str, Any]:
    from benchmarks.common import write
    from benchmarks.latency_bench import prompt_of_length
    from neuroscope.export.onnx_split import ExportConfig, export_split
    from neuroscope.models.loading import load_model

    model = load_model("smollm2-135m", device="cpu")
    t0 = time.perf_counter()
    manifest = export_split(model, ExportConfig(split=15, max_length=512), EXPORT)
    export_wall = time.perf_counter() - t0
    ids = model.to_tokens(prompt_of_length(model, 32)).cpu().numpy()
    cpu = [_cpu(model, ids, t, repeats) for t in (1, 2)]
    browser = _browser(model, ids, repeats)
    sizes = {k: v["bytes"] for k, v in manifest["files"].items() if k.endswith((".onnx", ".data"))}
    one = cpu[0]
    result = {
        "model": "smollm2-135m",
        "split": 15,
        "prompt_tokens": int(ids.shape[1]),
        "export": {
            "exporter_seconds": manifest["export_seconds"],
            "wall_seconds_with_hashing_and_page": round(export_wall, 2),
            "file_bytes": sizes,
            "total_mib": round(sum(sizes.values()) / 2**20, 1),
            "tied_embeddings_duplicated": manifest["tied_embeddings"],
        },
        "cpu": cpu,
        "browser": browser,
        "summary": {
            "export_s": manifest["export_seconds"],
            "parts_mib": round(sum(sizes.values()) / 2**20, 1),
            "pytorch_ms_1thread": round(one["pytorch"]["median_ms"], 1),
            "onnxruntime_ms_1thread": round(one["onnxruntime"]["median_ms"], 1),
            "onnxruntime_over_pytorch_1thread": round(one["onnxruntime_over_pytorch"]["median"], 3),
            "onnxruntime_over_pytorch_2threads": round(cpu[1]["onnxruntime_over_pytorch"]["median"], 3),
            "browser_wasm_ms": round(browser["next_token"]["median_ms"], 1),
            "browser_wasm_threads": browser["wasm_threads"],
        },
    }
    write("onnx", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run()["summary"], indent=2))
