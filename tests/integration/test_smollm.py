"""The bundled real model: SmolLM2-135M-Instruct (Llama architecture, 30 layers, GQA 9/3)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from neuroscope.interventions import Ablate, Steer

pytestmark = pytest.mark.integration
IOI = "When Mary and John went to the store, John gave a drink to"


def test_config_is_smollm2(smollm):
    c = smollm.cfg
    assert (c.n_layers, c.n_heads, c.n_kv_heads, c.d_model, c.d_head, c.d_mlp) == (30, 9, 3, 576, 64, 1536)


def test_hooked_logits_equal_huggingface(smollm):
    from transformers import AutoModelForCausalLM

    from neuroscope.models.loading import alias_path, gguf_cache_dir

    plain = AutoModelForCausalLM.from_pretrained(
        gguf_cache_dir(alias_path("smollm2-135m")), dtype=torch.float32
    ).eval()
    tokens = smollm.tokenize([IOI, "The capital of France is"])
    with torch.no_grad():
        ref = plain(input_ids=tokens.ids, attention_mask=tokens.attention_mask).logits
        ours = smollm([IOI, "The capital of France is"])
        cached, _ = smollm.run_with_cache([IOI, "The capital of France is"], names=lambda n: "resid" in n)
    assert (ours - ref).abs().max().item() <= 1e-5
    assert (cached - ref).abs().max().item() <= 1e-5


def test_ioi_predicts_mary(smollm):
    with torch.no_grad():
        logits = smollm(IOI)[0, -1]
    assert smollm.to_string([int(logits.argmax())]) == " Mary"


def test_chat_generation_and_steering(smollm):
    prompt = smollm.format_chat([{"role": "user", "content": "What is the capital of France?"}])
    out = smollm.generate(prompt, max_new_tokens=12)
    assert "Paris" in out
    with torch.no_grad():
        _, pos = smollm.run_with_cache(
            "I love this, it is wonderful and great", names=["blocks.10.hook_resid_pre"]
        )
        _, neg = smollm.run_with_cache(
            "I hate this, it is terrible and awful", names=["blocks.10.hook_resid_pre"]
        )
    vector = pos["resid_pre", 10][0].mean(0) - neg["resid_pre", 10][0].mean(0)
    steered = smollm.generate(prompt, max_new_tokens=12, interventions=[Steer(10, vector, alpha=8.0)])
    assert steered != out


def test_gqa_head_ablation_changes_the_logits(smollm):
    with torch.no_grad():
        base = smollm(IOI)
        ablated = smollm(IOI, interventions=[Ablate(heads=[(20, 4)])])
        _, c = smollm.run_with_cache(
            IOI,
            names=["blocks.20.attn.hook_z", "blocks.20.attn.hook_k"],
            interventions=[Ablate(heads=[(20, 4)])],
        )
    assert c["z", 20][0, :, 4].abs().max() == 0 and c["k", 20].shape[2] == 3
    assert (ablated - base).abs().max() > 1e-4


def test_cli_info():
    out = subprocess.run(
        [sys.executable, "-m", "neuroscope.cli", "info", "smollm2-135m", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"n_layers": 30' in out and '"n_hook_points": 482' in out
    bad = subprocess.run(
        [sys.executable, "-m", "neuroscope.cli", "info", "/no/such/model"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Could not find model" in bad.stderr
