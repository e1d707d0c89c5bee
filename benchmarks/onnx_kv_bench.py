"""Greedy generation with NeuroScope-Web's KV cache across the split (smollm2-135m, split after block 15).

Same work on every side: a 32-token prompt, 16 new tokens, greedy, no EOS stop, fp32, CPU, one intra-op thread
in Python. Compared: onnxruntime-python on the split parts without the cache (the whole sequence each step,
what the page did before) and with it (one position per step), onnxruntime-python on the whole model exported as
one part with its cache (the limit: no split, no residual crossing), and the page in headless Chromium
(onnxruntime-web wasm) with and without the cache. Each side's tokens are checked equal to the library's
``HookedModel.generate``. Python sides run in interleaved rounds. Adds ``generation`` to
``benchmarks/results/onnx.json`` (the other keys are kept). ``python -m benchmarks.onnx_kv_bench``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.onnx_bench import CHROMIUM, EXPORT

ROOT = Path(__file__).resolve().parents[1]
WHOLE = ROOT / "models" / "onnx-bench" / "smollm2-135m-whole-kv"
NEW_TOKENS = 16


def _export(model: Any) -> None:
    """The split export (with its KV parts) unless present, and the whole model as one cached part."""
    import torch

    from neuroscope.export import manifest as mf
    from neuroscope.export.onnx_kv import CachedSpan, export_cached, kv_names
    from neuroscope.export.onnx_split import ExportConfig, _Span, export_split

    if not (EXPORT / mf.MANIFEST).exists() or not mf.read_manifest(EXPORT).get("kv_parts"):
        export_split(model, ExportConfig(split=15, max_length=512), EXPORT)
    if not (WHOLE / "whole.onnx").exists():
        hf, ad = model.hf_model, model.adapter
        span = CachedSpan(_Span(hf, ad, 0, model.cfg.n_layers, True, True).eval())
        ids = torch.arange(8).repeat(2, 1)
        WHOLE.mkdir(parents=True, exist_ok=True)
        names = kv_names(span, "input_ids", "logits")
        export_cached(span, ids, names, 18).save(WHOLE / "whole.onnx")
        (WHOLE / "io.json").write_text(json.dumps({"inputs": names[0], "shape": span.past_shape(1, 1)}))


class _Whole:
    def __init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(WHOLE / "whole.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        io = json.loads((WHOLE / "io.json").read_text())
        self.names, self.shape = io["inputs"][2:], io["shape"]

    def generate_ids(self, ids: list[int], n: int) -> list[int]:
        past = {k: np.zeros(self.shape, dtype=np.float32) for k in self.names}
        mask = np.zeros((1, 1), dtype=np.int64)
        feed, new = list(ids), []
        for _ in range(n):
            x = np.asarray([feed], dtype=np.int64)
            mask = np.concatenate([mask, np.ones_like(x)], axis=1)
            out = self.session.run(None, {"input_ids": x, "attention_mask": mask, **past})
            past = dict(zip(self.names, out[1:], strict=True))
            nxt = int(out[0][0, -1].argmax())
            new.append(nxt)
            feed = [nxt]
        return new


def _browser(model: Any, ids: list[int], rounds: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    app = create_app(Settings(model=model.cfg.name, onnx_dir=str(EXPORT)), model=model)
    runs: dict[str, list[dict[str, Any]]] = {"cached": [], "uncached": []}
    with serve_in_thread(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.set_default_timeout(600_000)
        page.goto(base + "/web/")
        loaded = page.evaluate("() => window.nsweb.ready")
        page.evaluate("([ids]) => window.nsweb.client.genBench(ids, 2, true)", [ids])  # warm-up
        for _ in range(rounds):
            for key, cache in (("cached", True), ("uncached", False)):
                r = page.evaluate(
                    "([ids, n, c]) => window.nsweb.client.genBench(ids, n, c)", [ids, NEW_TOKENS, cache]
                )
                runs[key].append(r)
        browser.close()
    out: dict[str, Any] = {
        "engine": "onnxruntime-web (wasm) in headless Chromium, served by the workbench with COOP/COEP",
        "wasm_threads": loaded["threads"],
        "kv_parts_loaded": loaded["kvCache"],
        "page_load_and_verify_s": round(loaded["loadMs"] / 1000, 2),
    }
    for key, rs in runs.items():
        decode = [ms for r in rs for ms in r["stepsMs"][1:]]
        out[key] = {
            "tokens_per_s_median": statistics.median(NEW_TOKENS / (r["totalMs"] / 1000) for r in rs),
            "prompt_step_ms_median": statistics.median(r["stepsMs"][0] for r in rs),
            "later_step_ms_median": statistics.median(decode),
            "rounds": len(rs),
            "ids": rs[0]["ids"],
        }
    return out


def run(rounds: int = 3, browser_rounds: int = 2) -> dict[str, Any]:
    import os

    import torch

    from benchmarks.common import machine_info
    from benchmarks.latency_bench import prompt_of_length
    from neuroscope.export.runtime import SplitRunner
    from neuroscope.models.loading import load_model

    torch.set_num_threads(1)
    model = load_model("smollm2-135m", device="cpu")
    t0 = time.perf_counter()
    _export(model)
    export_s = time.perf_counter() - t0
    prompt = prompt_of_length(model, 32)
    ids = model.to_tokens(prompt)[0].tolist()
    with torch.no_grad():
        ref = model.generate(prompt, NEW_TOKENS, stop_at_eos=False)
    runner = SplitRunner(EXPORT, verify=False, threads=1)
    whole = _Whole()
    sides = {
        "split_uncached": lambda: runner.generate_ids(ids, NEW_TOKENS, cache=False),
        "split_cached": lambda: runner.generate_ids(ids, NEW_TOKENS),
        "whole_model_cached": lambda: whole.generate_ids(ids, NEW_TOKENS),
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    tokens: dict[str, list[int]] = {}
    for _ in range(rounds):
        for key, fn in sides.items():
            t = time.perf_counter()
            tokens[key] = fn()
            times[key].append(time.perf_counter() - t)
    load_python = os.getloadavg()
    python = {
        k: {
            "tokens_per_s_median": round(NEW_TOKENS / statistics.median(v), 2),
            "seconds": [round(x, 3) for x in v],
            "same_text_as_library": runner.tokenizer.decode(tokens[k], skip_special_tokens=True) == ref,
        }
        for k, v in times.items()
    }
    browser = _browser(model, ids, browser_rounds)
    for key in ("cached", "uncached"):
        browser[key]["same_text_as_library"] = (
            runner.tokenizer.decode(browser[key].pop("ids"), skip_special_tokens=True) == ref
        )
    py_speedup = (
        python["split_cached"]["tokens_per_s_median"] / python["split_uncached"]["tokens_per_s_median"]
    )
    web_speedup = browser["cached"]["tokens_per_s_median"] / browser["uncached"]["tokens_per_s_median"]
    gen = {
        "machine": machine_info(),
        "load_average_python_part": [round(x, 2) for x in load_python],
        "note": "measured while other helpers loaded this 2-core machine (see the load averages)",
        "prompt_tokens": len(ids),
        "new_tokens": NEW_TOKENS,
        "export_and_check_s": round(export_s, 1),
        "python_onnxruntime_1thread": python,
        "browser": browser,
        "summary": {
            "python_split_cached_tok_s": python["split_cached"]["tokens_per_s_median"],
            "python_split_uncached_tok_s": python["split_uncached"]["tokens_per_s_median"],
            "python_whole_model_cached_tok_s": python["whole_model_cached"]["tokens_per_s_median"],
            "python_cache_speedup": round(py_speedup, 2),
            "browser_cached_tok_s": round(browser["cached"]["tokens_per_s_median"], 2),
            "browser_uncached_tok_s": round(browser["uncached"]["tokens_per_s_median"], 2),
            "browser_cache_speedup": round(web_speedup, 2),
            "browser_cached_vs_1435ms_per_token": round(browser["cached"]["tokens_per_s_median"] * 1.435, 1),
        },
    }
    path = ROOT / "benchmarks" / "results" / "onnx.json"
    result = json.loads(path.read_text())
    result["generation"] = gen
    path.write_text(json.dumps(result, indent=2) + "\n")
    return gen


if __name__ == "__main__":
    print(json.dumps(run()["summary"], indent=2))
