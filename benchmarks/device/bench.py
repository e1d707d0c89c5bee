"""The GPU check behind ``benchmarks/device/run.sh``: a ~1B model in bf16, int8 and nf4 on one CUDA device.

For each precision: load time and GPU memory after loading; the hook overhead (``run_with_cache`` of every
resid/attn_out/mlp_out hook vs the plain Hugging Face forward of the same loaded model, interleaved rounds,
CUDA-synchronised); recording tokens/s (``record()`` of the middle layer's residual over real text) with the
peak GPU memory; and the residual stream's cosine to bf16 (mean over tokens, first token excluded, per layer:
worst and mean). Writes one JSON file (default ``benchmarks/results/device.json``).

    python -m benchmarks.device.bench --model /path/to/hf-folder          # what run.sh calls
    python -m benchmarks.device.bench --model tiny:llama --cpu-smoke      # the same code on the CPU, small

The model is any local Hugging Face folder (config.json + safetensors) of a supported architecture, e.g.
TinyLlama-1.1B, Llama-3.2-1B, Qwen2.5-1.5B or gemma-2-2b, or a hub id already in the local cache; nothing
is downloaded. Without a CUDA device (and without ``--cpu-smoke``) it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine_info

MODES = ("bf16", "int8", "nf4")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _mem(device: str) -> dict[str, float]:
    if device != "cuda":
        return {}
    return {
        "allocated_mib": round(torch.cuda.memory_allocated() / 2**20, 1),
        "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }


def _corpus(arg: str | None) -> str:
    """Real text: --data, else the prepared default corpus, else this repository's docs (Markdown prose)."""
    if arg:
        return arg
    root = Path(__file__).resolve().parents[2]
    if (root / "data" / "corpus" / "corpus.json").exists():
        return str(root / "data" / "corpus")
    return str(root / "docs")


def _names(n_layers: int) -> list[str]:
    return [
        f"blocks.{l}.{h}"
        for l in range(n_layers)
        for h in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
    ]


def overhead(model: Any, ids: torch.Tensor, device: str, rounds: int) -> dict[str, Any]:
    names = _names(model.cfg.n_layers)
    fns = {
        "hf_plain": lambda: model.hf_model(input_ids=ids, use_cache=False),
        "hooked_all_resid": lambda: model.run_with_cache(ids, names=names),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():  # warm-up (kernels, allocator)
            fn()
        for r in range(rounds):
            for k in sorted(fns, reverse=bool(r % 2)):
                _sync(device)
                t0 = time.perf_counter()
                fns[k]()
                _sync(device)
                times[k].append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(times["hooked_all_resid"], times["hf_plain"], strict=True)]
    return {
        "tokens": int(ids.numel()),
        "hooks": len(names),
        "median_ms": {k: round(1e3 * statistics.median(v), 2) for k, v in times.items()},
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def recording(model: Any, data: str, tokens: int, ctx_len: int, batch: int, tmp: Path, device: str) -> dict:
    from neuroscope.record.writer import TraceConfig, record

    layer = model.cfg.n_layers // 2
    cfg = TraceConfig(
        hooks=(f"blocks.{layer}.hook_resid_post",),
        data=data,
        tokens=tokens,
        ctx_len=ctx_len,
        batch_size=batch,
        shard_tokens=max(ctx_len, tokens // 4),
        dtype="float16",
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    res = record(model, cfg, tmp, progress=False)
    return {
        "layer": layer,
        "tokens": res.tokens,
        "seconds": res.seconds,
        "tokens_per_s": res.tokens_per_s,
        **_mem(device),
    }


def residuals(model: Any, ids: torch.Tensor) -> list[torch.Tensor]:
    names = [f"blocks.{l}.hook_resid_post" for l in range(model.cfg.n_layers)]
    with torch.inference_mode():
        _, cache = model.run_with_cache(ids, names=names)
    return [cache[n][:, 1:].float().cpu() for n in names]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="local HF folder (or cached hub id) of a ~1B model")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "device.json"))
    p.add_argument("--data", default=None, help="text to record (default: data/corpus, else docs/)")
    p.add_argument("--tokens", type=int, default=65_536, help="tokens recorded per precision")
    p.add_argument("--ctx-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=10, help="overhead rounds")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument(
        "--cpu-smoke", action="store_true", help="run on the CPU with small sizes (checks the script)"
    )
    args = p.parse_args(argv)

    import tempfile

    import neuroscope as ns
    from neuroscope.record.datasets import iter_contexts, load_documents, resolve_data

    if args.cpu_smoke:
        device, tokens, ctx_len, batch, rounds = "cpu", 1024, 64, 4, 2
    else:
        if not torch.cuda.is_available():
            print(
                "benchmarks/device: no CUDA device visible to this Python "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). Run it on a GPU machine "
                "with a CUDA build of torch (PYTHON=/path/to/python benchmarks/device/run.sh MODEL).",
                file=sys.stderr,
            )
            return 2
        device, tokens, ctx_len, batch, rounds = (
            "cuda",
            args.tokens,
            args.ctx_len,
            args.batch_size,
            args.rounds,
        )
    data = _corpus(args.data)
    info = {**machine_info(), "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}
    result: dict[str, Any] = {"machine": info, "model": args.model, "data": data, "modes": {}}
    ref: list[torch.Tensor] | None = None
    probe_ids = None
    t_start = time.perf_counter()
    for mode in args.modes.split(","):
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        model = ns.load_model(
            args.model, device=device, dtype="bfloat16", quantize=None if mode == "bf16" else mode
        )
        entry: dict[str, Any] = {
            "load_seconds": round(time.perf_counter() - t0, 2),
            "after_load": _mem(device),
        }
        if model.quantization is not None:
            entry["quantization"] = model.quantization.to_dict()
        if probe_ids is None:
            docs = load_documents(resolve_data(data))
            ctxs = list(iter_contexts(docs, model.tokenizer, ctx_len, 4))
            probe_ids = torch.stack(ctxs)
        ids = probe_ids.to(model.device)
        entry["overhead"] = overhead(model, ids[:, :ctx_len], device, rounds)
        res = residuals(model, ids)
        if ref is None:
            ref = res
        cos = [
            torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()
            for a, b in zip(res, ref, strict=True)
        ]
        entry["resid_cosine_to_bf16"] = {"worst": round(min(cos), 4), "mean": round(sum(cos) / len(cos), 4)}
        with tempfile.TemporaryDirectory() as tmp:
            entry["recording"] = recording(model, data, tokens, ctx_len, batch, Path(tmp) / "acts", device)
        result["modes"][mode] = entry
        print(json.dumps({mode: entry}), flush=True)
        del model
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
