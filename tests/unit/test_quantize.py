"""Quantized tiny models (bitsandbytes int8/nf4 on the CPU, torchao int8) and device_map placement: every
hook fires, nothing attached == the same quantized model run by plain transformers, activations stay close
to fp32, weight accessors dequantize, memory shrinks, gradients pass (or a named error says they cannot)."""

from __future__ import annotations

import dataclasses
import tempfile

import pytest
import torch
from tinymodels import tiny

import neuroscope as ns
from neuroscope.analysis.attribution import gradient_x_input
from neuroscope.errors import GradientsUnavailableError, InvalidConfigError, QuantizationUnavailableError
from neuroscope.interventions import Ablate
from neuroscope.models.quantize import bnb_config, pick_backend, weight_bytes

PROMPT = ["The residual stream carries every feature from one layer to the next one."]
# (backend, mode) → worst layer's mean residual cosine to fp32 (first token excluded) and the largest
# relative error of a dequantized weight. On these random 64-wide tiny weights nf4 measures 0.915 and
# 0.093; the acceptance thresholds (0.99 int8, 0.93 nf4) are checked on smollm2-135m, integration tier.
CASES = {
    ("bitsandbytes", "int8"): (0.99, 0.02),
    ("bitsandbytes", "nf4"): (0.90, 0.12),
    ("torchao", "int8"): (0.99, 0.02),
}


@pytest.fixture(scope="module", params=list(CASES), ids=lambda c: f"{c[0]}-{c[1]}")
def quantized(request):
    backend, mode = request.param
    return backend, mode, ns.load_model("tiny:llama", device="cpu", quantize=mode, quantize_backend=backend)


def test_a_4bit_model_packed_for_the_cpu_kernel_refuses_gradients():
    m = ns.load_model("tiny:llama", device="cpu", quantize="nf4")
    packable = [mod for mod in m.hf_model.modules() if hasattr(mod, "support_avx512bf16_for_cpu")]
    assert packable and not any(mod.support_avx512bf16_for_cpu for mod in packable)
    for mod in packable:  # what bitsandbytes does by default on a CPU with AVX512-BF16
        mod.weight.quant_state.packing_format_for_cpu = True
    with pytest.raises(GradientsUnavailableError, match="no backward"):
        gradient_x_input(m, "The residual stream", 10)


def test_bad_quantize_arguments_are_named_errors():
    with pytest.raises(InvalidConfigError, match="int8, nf4"):
        ns.load_model("tiny:llama", device="cpu", quantize="int3")
    with pytest.raises(QuantizationUnavailableError, match="needs bitsandbytes"):
        pick_backend("nf4", "torchao")
    with pytest.raises(InvalidConfigError, match="backend"):
        pick_backend("int8", "gptq")


def test_device_map_offload_keeps_hooks_interventions_and_accessors_right():
    """accelerate's placement hooks (here: layer 1 offloaded to disk, fetched at its forward) sit beside
    ours; everything must equal the model held whole."""
    ref = tiny("llama")
    dm = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    m = ns.load_model("tiny:llama", device="cpu", device_map=dm)
    assert m.hf_model.model.layers[1].self_attn.o_proj.weight.device.type == "meta"  # really offloaded
    ids = ref.to_tokens(PROMPT)
    logits, cache = m.run_with_cache(ids)
    logits0, cache0 = ref.run_with_cache(ids)
    torch.testing.assert_close(logits, logits0, rtol=1e-5, atol=1e-5)
    for n in ref.hook_names():
        torch.testing.assert_close(cache[n], cache0[n], rtol=1e-5, atol=1e-5, msg=n)
    iv = [Ablate(heads=[(1, 2)])]
    torch.testing.assert_close(m(ids, interventions=iv), ref(ids, interventions=iv), rtol=1e-5, atol=1e-5)
    assert torch.equal(m.W_O(1), ref.W_O(1)) and torch.equal(m.W_out(1), ref.W_out(1))


def _cos_per_layer(a, b, names):
    return [
        torch.nn.functional.cosine_similarity(a[n][:, 1:], b[n][:, 1:], dim=-1).mean().item() for n in names
    ]


def test_every_hook_fires_with_fp32_shapes_and_activations_stay_close(quantized):
    backend, mode, m = quantized
    ref = tiny("llama")
    assert m.quantization.mode == mode and m.quantization.backend == backend
    assert m.quantization.quantized_modules == 14  # q, k, v, o, gate, up, down × 2 layers; not lm_head
    assert m.hook_names() == ref.hook_names()
    ids = ref.to_tokens(PROMPT)
    _, cache = m.run_with_cache(ids)
    _, cache0 = ref.run_with_cache(ids)
    assert sorted(cache.keys()) == sorted(cache0.keys()) == sorted(ref.hook_names())
    for n in ref.hook_names():
        assert cache[n].shape == cache0[n].shape, n
        assert torch.equal(torch.isfinite(cache[n]), torch.isfinite(cache0[n])), n  # -inf: masked scores
    names = [f"blocks.{l}.hook_resid_post" for l in range(ref.cfg.n_layers)]
    worst = min(_cos_per_layer(cache, cache0, names))
    assert worst >= CASES[(backend, mode)][0], worst


def _plain(backend, mode):
    """The same quantized model, loaded by plain transformers (bitsandbytes) or quantized by torchao's
    own API, with no NeuroScope code in the way."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_
    from transformers import AutoModelForCausalLM

    from neuroscope.models.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        if backend == "bitsandbytes":
            cfg = bnb_config(mode, torch.float32)
            plain = AutoModelForCausalLM.from_pretrained(
                tmp, quantization_config=cfg, dtype=torch.float32, device_map="cpu"
            ).eval()
            # the kernel choice NeuroScope makes (keep_differentiable), made here through the same attribute
            for mod in plain.modules():
                if hasattr(mod, "support_avx512bf16_for_cpu"):
                    mod.support_avx512bf16_for_cpu = False
            return plain
        plain = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
    quantize_(
        plain,
        Int8WeightOnlyConfig(),
        filter_fn=lambda mod, fqn: isinstance(mod, torch.nn.Linear) and fqn != "lm_head",
    )
    return plain


def test_nothing_attached_equals_plain_transformers_on_the_same_quantized_model(quantized):
    backend, mode, m = quantized
    plain = _plain(backend, mode)
    ids = m.to_tokens(PROMPT)
    with torch.no_grad():
        expected = plain(input_ids=ids).logits
        ours = m(ids)
        cached, _ = m.run_with_cache(ids)  # every hook attached, reading only
    assert (ours - expected).abs().max() <= 1e-5
    assert (cached - expected).abs().max() <= 1e-5


def test_accessors_return_dequantized_weights(quantized):
    backend, mode, m = quantized
    ref = tiny("llama")
    bound = CASES[(backend, mode)][1]
    for l in range(ref.cfg.n_layers):
        for a, b in ((m.W_O(l), ref.W_O(l)), (m.W_out(l), ref.W_out(l))):
            assert a.shape == b.shape and a.dtype == torch.float32
            rel = float((a - b).norm() / b.norm())
            assert 1e-4 < rel < bound, rel  # quantized, and close
    assert torch.equal(m.W_U, ref.W_U) and torch.equal(m.W_E, ref.W_E)  # embedding/unembedding stay fp32
    # the dequantized W_out is what the MLP's output projection computes
    ids = ref.to_tokens(PROMPT)
    _, cache = m.run_with_cache(ids, names=["blocks.1.mlp.hook_post", "blocks.1.hook_mlp_out"])
    rebuilt = cache["blocks.1.mlp.hook_post"] @ m.W_out(1)
    out = cache["blocks.1.hook_mlp_out"]
    assert float((rebuilt - out).norm() / out.norm()) < 0.02


def test_memory_shrinks(quantized):
    backend, mode, m = quantized
    fp32 = weight_bytes(tiny("llama").hf_model)
    assert m.quantization.weight_bytes < fp32
    # the linear layers hold 4 bytes per weight in fp32, ~1 in int8, ~0.5 in nf4 (+ scales)
    linear = sum(
        p.numel() for n, p in tiny("llama").hf_model.named_parameters() if "layers" in n and "norm" not in n
    )
    saved = fp32 - m.quantization.weight_bytes
    assert saved > (2.5 if mode == "int8" else 3.0) * linear


def test_gradients_pass_through_quantized_layers_or_a_named_error_says_not(quantized):
    backend, mode, m = quantized
    assert m.quantization.gradients  # probed at load: a backward through a quantized layer reaches its input
    r = gradient_x_input(m, "The residual stream", 10)
    r0 = gradient_x_input(tiny("llama"), "The residual stream", 10)
    a, b = torch.tensor(r.attributions), torch.tensor(r0.attributions)
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9
    m("a forward without gradients first: 4-bit layers must not switch to a kernel without a backward")
    r1 = gradient_x_input(m, "The residual stream", 10)
    assert r1.attributions == pytest.approx(r.attributions, rel=1e-5, abs=1e-7)
    m.quantization = dataclasses.replace(m.quantization, gradients=False)
    try:
        with pytest.raises(GradientsUnavailableError, match="gradient × input needs gradients"):
            gradient_x_input(m, "The residual stream", 10)
    finally:
        m.quantization = dataclasses.replace(m.quantization, gradients=True)


def test_cli_info_quantize(capsys):
    import json

    from neuroscope.cli import main

    assert main(["info", "tiny:llama", "--device", "cpu", "--quantize", "nf4", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["quantization"]["mode"] == "nf4" and info["quantization"]["quantized_modules"] == 14
