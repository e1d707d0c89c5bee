"""Residual norms and direct logit attribution on every tiny architecture."""

from __future__ import annotations

import torch

from neuroscope.analysis import figures
from neuroscope.analysis.residual import direct_logit_attribution, residual_norms

PROMPT = "hello wor"


def test_dla_adds_up_to_the_logit_difference(any_tiny, tmp_path):
    r = direct_logit_attribution(any_tiny, PROMPT, "l", "o")
    assert r.rel_error <= 1e-3
    if not any_tiny.cfg.final_logit_softcap:  # then the model's logits are the pre-softcap ones
        with torch.no_grad():
            last = any_tiny(PROMPT)[0, -1].float()
        tok = any_tiny.tokenizer
        diff = (
            last[tok.encode("l", add_special_tokens=False)[0]]
            - last[tok.encode("o", add_special_tokens=False)[0]]
        )
        assert abs(float(diff) - r.total) <= 1e-3 * max(1.0, abs(float(diff)))
    figures.write(r.figure(), tmp_path / "dla.html")


def test_head_terms_are_each_heads_write(tiny_llama):
    m = tiny_llama
    r = direct_logit_attribution(m, PROMPT, "l")
    _, cache = m.run_with_cache(PROMPT)
    head = torch.einsum("d,dm->m", cache["z", 1][0, -1, 2], m.W_O(1)[2])
    normed = cache.apply_ln_final(head[None, None, None], pos_slice=-1)[0, 0, 0]
    expected = float((normed @ m.W_U[:, m.tokenizer.encode("l", add_special_tokens=False)[0]]).detach())
    assert abs(r.head_map[1][2] - expected) < 1e-5


def test_residual_norms(tiny_gpt2, tmp_path):
    r = residual_norms(tiny_gpt2, PROMPT)
    _, cache = tiny_gpt2.run_with_cache(PROMPT, names=["blocks.1.hook_resid_pre"])
    assert abs(r.norms[1][-1] - float(cache["resid_pre", 1][0, -1].norm())) < 1e-4
    assert r.last_token == [row[-1] for row in r.norms]
    figures.write(r.figure(), tmp_path / "norms.html")
