"""smollm2-135m in int8 and nf4 (bitsandbytes on the CPU): every hook fires, nothing attached equals the same
quantized model run by plain transformers, the residual stream stays close to fp32 on real text, weight
accessors dequantize (relative error printed), and the weights take less memory (printed)."""

from __future__ import annotations

import itertools

import pytest
import torch

import neuroscope as ns
from neuroscope.models.loading import alias_path, gguf_cache_dir
from neuroscope.models.quantize import bnb_config, weight_bytes
from neuroscope.record.datasets import iter_contexts, load_documents

# worst layer's mean cosine of blocks.{l}.hook_resid_post to fp32, first token of each context excluded
# (acceptance: 0.99 / 0.93; measured here on 2 held-out contexts: 0.997 / 0.966); dequantized weight
# relative error bound (measured ~0.01 / ~0.095)
BOUNDS = {"int8": (0.99, 0.02), "nf4": (0.93, 0.12)}


@pytest.fixture(scope="module", params=["int8", "nf4"])
def quantized(request):
    return request.param, ns.load_model("smollm2-135m", device="cpu", quantize=request.param)


@pytest.fixture(scope="module")
def contexts(smollm, real_corpus):
    docs = load_documents(real_corpus / "heldout.jsonl")
    return torch.stack(list(itertools.islice(iter_contexts(docs, smollm.tokenizer, 128), 2)))


def test_every_hook_fires_and_the_residual_stays_close_to_fp32(quantized, smollm, contexts):
    mode, m = quantized
    assert m.hook_names() == smollm.hook_names() and m.quantization.quantized_modules == 30 * 7
    _, cache = m.run_with_cache(contexts[:1, :16])
    assert sorted(cache.keys()) == sorted(smollm.hook_names())
    names = [f"blocks.{l}.hook_resid_post" for l in range(smollm.cfg.n_layers)]
    _, q = m.run_with_cache(contexts, names=names)
    _, f = smollm.run_with_cache(contexts, names=names)
    cos = [
        torch.nn.functional.cosine_similarity(q[n][:, 1:], f[n][:, 1:], dim=-1).mean().item() for n in names
    ]
    print(f"{mode}: residual cosine to fp32 per layer, worst {min(cos):.4f}, mean {sum(cos) / len(cos):.4f}")
    assert min(cos) >= BOUNDS[mode][0]


def test_nothing_attached_equals_plain_transformers(quantized, contexts):
    from transformers import AutoModelForCausalLM

    mode, m = quantized
    folder = gguf_cache_dir(alias_path("smollm2-135m"))
    plain = AutoModelForCausalLM.from_pretrained(
        str(folder),
        quantization_config=bnb_config(mode, torch.float32),
        dtype=torch.float32,
        device_map="cpu",
    ).eval()
    for (
        mod
    ) in plain.modules():  # the 4-bit kernel choice NeuroScope makes (models.quantize.keep_differentiable)
        if hasattr(mod, "support_avx512bf16_for_cpu"):
            mod.support_avx512bf16_for_cpu = False
    ids = contexts[:1, :48]
    with torch.no_grad():
        expected = plain(input_ids=ids).logits
        ours = m(ids)
        cached, _ = m.run_with_cache(ids, names=lambda n: "resid" in n)
    assert (ours - expected).abs().max() <= 1e-5 and (cached - expected).abs().max() <= 1e-5
    assert torch.equal(ours.argmax(-1), expected.argmax(-1))


def test_accessors_dequantize_and_memory_shrinks(quantized, smollm):
    mode, m = quantized
    rel = []
    for l in (0, 15, 29):
        for a, b in ((m.W_O(l), smollm.W_O(l)), (m.W_out(l), smollm.W_out(l))):
            assert a.shape == b.shape
            rel.append(float((a - b).norm() / b.norm()))
    assert torch.equal(m.W_U, smollm.W_U) and torch.equal(m.W_E, smollm.W_E)
    fp32 = weight_bytes(smollm.hf_model)
    print(
        f"{mode}: dequantized W_O/W_out relative error {min(rel):.4f}..{max(rel):.4f}; "
        f"weights {m.quantization.weight_bytes / 2**20:.1f} MiB vs fp32 {fp32 / 2**20:.1f} MiB"
    )
    assert min(rel) > 1e-4 and max(rel) < BOUNDS[mode][1]
    assert m.quantization.weight_bytes < (0.65 if mode == "int8" else 0.55) * fp32
