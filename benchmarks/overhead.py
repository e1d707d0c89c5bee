"""Hook overhead on smollm2-135m: NeuroScope vs TransformerLens's bridge vs nnsight, as ratios to plain HF.

Every variant runs the same 64-token prompt, interleaved round-robin (shuffled per round) in one process; the
headline ratio is the median over rounds of each variant's time over the plain forward's time in the same round.
The spread is the baseline's own interquartile range relative to its median.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.common import interleaved, paired_ratios, summary, write

PROMPT_TOKENS = 64


def _names(n_layers: int) -> list[str]:
    names = []
    for l in range(n_layers):
        names += [
            f"blocks.{l}.hook_resid_pre",
            f"blocks.{l}.hook_resid_mid",
            f"blocks.{l}.hook_resid_post",
            f"blocks.{l}.hook_attn_out",
            f"blocks.{l}.hook_mlp_out",
        ]
    return names


def run(repeats: int = 30) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import neuroscope as ns
    from neuroscope.models.loading import alias_path, gguf_cache_dir

    torch.set_grad_enabled(False)
    folder = str(gguf_cache_dir(alias_path("smollm2-135m")))
    t0 = time.perf_counter()
    model = ns.load_model("smollm2-135m", device="cpu")
    load_s = time.perf_counter() - t0
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    text = open(__file__).read()
    ids = model.to_tokens(text)[:, :PROMPT_TOKENS]
    assert ids.shape[1] == PROMPT_TOKENS
    names = _names(model.cfg.n_layers)
    with_patterns = names + [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]

    fns = {
        "hf_plain": lambda: plain(input_ids=ids),
        "neuroscope_resid": lambda: model.run_with_cache(ids, names=names),
        "neuroscope_resid_patterns": lambda: model.run_with_cache(ids, names=with_patterns),
    }
    notes = {}
    try:
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(
            folder,
            hf_model=AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(),
            tokenizer=tok,
        )
        name_set = set(names)
        fns["transformer_lens_bridge_resid"] = lambda: bridge.run_with_cache(
            ids, names_filter=lambda n: n in name_set
        )
    except Exception as e:  # report, don't hide: the peer may not run here
        notes["transformer_lens_bridge"] = f"failed: {e!r}"
    try:
        from nnsight import LanguageModel

        lm = LanguageModel(
            AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), tokenizer=tok
        )
        layers = lm.model.layers

        def nnsight_run():
            saved = []
            with lm.trace(ids):
                for layer in layers:
                    # nnsight needs the accesses in execution order
                    saved.append(layer.input.save())
                    saved.append(layer.self_attn.output[0].save())
                    saved.append(layer.post_attention_layernorm.input.save())
                    saved.append(layer.mlp.output.save())
                    saved.append(layer.output.save())
            return saved

        nnsight_run()
        fns["nnsight_resid"] = nnsight_run
    except Exception as e:
        notes["nnsight"] = f"failed: {e!r}"

    times = interleaved(fns, repeats=repeats)
    base = statistics.median(times["hf_plain"])
    paired = paired_ratios(times, "hf_plain")
    base_s = summary(times["hf_plain"])
    spread = (base_s["q3_ms"] - base_s["q1_ms"]) / base_s["median_ms"]
    result = {
        "model": "smollm2-135m",
        "prompt_tokens": PROMPT_TOKENS,
        "repeats": repeats,
        "hooks_cached": len(names),
        "timings": {k: summary(v) for k, v in times.items()},
        # the headline: per-round paired ratios (see benchmarks.common.paired_ratios)
        "ratio_to_hf": {k: v["median"] for k, v in paired.items()},
        "paired_ratio_to_hf": paired,
        "ratio_of_medians_to_hf": {k: statistics.median(v) / base for k, v in times.items()},
        "baseline_relative_iqr": spread,
        "load_model_seconds_warm": load_s,
        "notes": notes,
        "targets": {"neuroscope_resid": 1.05, "neuroscope_resid_patterns": 1.6},
    }
    write("overhead", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
