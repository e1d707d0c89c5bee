"""Gradient × input and integrated gradients (completeness) on tiny models."""

from __future__ import annotations

import functools

import pytest
import torch

import neuroscope as ns
from neuroscope.analysis import figures
from neuroscope.analysis.attribution import gradient_x_input, integrated_gradients
from neuroscope.errors import InvalidConfigError

PROMPT = "hello wor"


@functools.cache
def tiny(name: str) -> ns.HookedModel:
    return ns.load_model(f"tiny:{name}", device="cpu")


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma2"])
def test_integrated_gradients_completeness(name, tmp_path):
    r = integrated_gradients(tiny(name), PROMPT, "l", "o", steps=64)
    assert r.completeness_error <= 0.01
    assert abs(sum(r.attributions) - (r.f_input - r.f_baseline)) <= 0.01 * abs(r.f_input - r.f_baseline)
    figures.write(r.figure(), tmp_path / "ig.html")


def test_trapezoid_rule_and_baselines(tiny_gpt2):
    r = integrated_gradients(tiny_gpt2, PROMPT, "l", steps=64, rule="trapezoid", baseline="zero")
    assert r.completeness_error <= 0.01
    ref = integrated_gradients(tiny_gpt2, PROMPT, "l", steps=32, baseline="hello wxr")
    assert ref.completeness_error <= 0.01 and ref.baseline == "hello wxr"
    assert abs(ref.attributions[1]) < 1e-6 and abs(ref.attributions[8]) > 0  # only the changed byte counts
    with pytest.raises(InvalidConfigError):
        integrated_gradients(tiny_gpt2, PROMPT, "l", baseline="too long a prompt")


def test_gradient_x_input_matches_manual(tiny_llama, tmp_path):
    m = tiny_llama
    r = gradient_x_input(m, PROMPT, "l")
    ids = m.to_tokens(PROMPT)
    emb = m.W_E[ids[0]].detach().clone().requires_grad_(True)
    logits = m.run_with_hooks(ids, fwd_hooks=[("hook_embed", lambda x, hook: emb[None])])
    logits[0, -1, m.tokenizer.encode("l", add_special_tokens=False)[0]].backward()
    manual = (emb.grad * emb).sum(-1)
    assert torch.allclose(torch.tensor(r.attributions), manual.detach(), atol=1e-5)
    figures.write(r.figure(), tmp_path / "gxi.html")
