"""ActivationCache: shorthand lookup, residual decompositions, the frozen final norm, size and device."""

from __future__ import annotations

import torch

PROMPT = "Residual streams add up"


def test_shorthand_and_membership(tiny_llama):
    _, cache = tiny_llama.run_with_cache(PROMPT)
    assert torch.equal(cache["pattern", 1], cache["blocks.1.attn.hook_pattern"])
    assert torch.equal(cache["resid_pre", -1], cache["blocks.1.hook_resid_pre"])
    assert ("z", 0) in cache and "blocks.0.attn.hook_z" in cache and "nope" not in cache
    assert cache.nbytes == sum(t.numel() * t.element_size() for t in cache._store.values()) > 0
    assert cache.to("cpu")["embed"].device.type == "cpu"


def test_decompose_resid_sums_to_the_final_residual(any_tiny):
    m = any_tiny
    _, cache = m.run_with_cache(PROMPT)
    parts, labels = cache.decompose_resid(return_labels=True)
    assert len(labels) == parts.shape[0] and labels[-1] == f"{m.cfg.n_layers - 1}_mlp_out"
    final = cache["resid_post", m.cfg.n_layers - 1]
    torch.testing.assert_close(parts.sum(0), final, atol=1e-5, rtol=1e-5)


def test_accumulated_resid(any_tiny):
    m = any_tiny
    _, cache = m.run_with_cache(PROMPT)
    acc, labels = cache.accumulated_resid(return_labels=True)
    assert acc.shape[0] == m.cfg.n_layers + 1 and labels[0] == "0_pre" and labels[-1] == "final_post"
    assert torch.equal(acc[-1], cache["resid_post", m.cfg.n_layers - 1])
    last = cache.accumulated_resid(apply_ln=True, pos_slice=-1)
    assert last.shape == (m.cfg.n_layers + 1, 1, 1, m.cfg.d_model)


def test_frozen_final_norm_is_linear_and_exact_on_the_total(any_tiny):
    m = any_tiny
    logits, cache = m.run_with_cache(PROMPT)
    parts = cache.decompose_resid()
    normed = cache.apply_ln_final(parts)
    bias = getattr(m.hf_model.get_submodule(m.adapter.final_norm), "bias", None)
    total = normed.sum(0) + (bias if bias is not None else 0)
    torch.testing.assert_close(total, cache["ln_final.hook_normalized"], atol=1e-4, rtol=1e-4)
