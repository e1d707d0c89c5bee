"""Logit lens and tuned lens on tiny random models."""

from __future__ import annotations

import torch

from neuroscope.analysis import figures
from neuroscope.analysis.lens import TunedLens, logit_lens, train_tuned_lens

PROMPT = "The cat sat on the mat."


def test_last_layer_is_the_models_distribution(any_tiny, tmp_path):
    r = logit_lens(any_tiny, PROMPT, k=3)
    with torch.no_grad():
        probs = torch.softmax(any_tiny(PROMPT)[0].float(), -1)
    assert (r.probs[-1] - probs).abs().max().item() <= 1e-5
    assert max(r.kl_to_final[-1]) <= 1e-6
    assert r.final_token_rank[-1] == [0] * len(r.str_tokens)
    assert len(r.labels) == any_tiny.cfg.n_layers + 1
    assert figures.write(r.figure(), tmp_path / "lens.html").stat().st_size > 1000


def test_lens_matches_manual_decoding_at_layer_one(tiny_llama):
    m = tiny_llama
    r = logit_lens(m, PROMPT, k=1)
    _, cache = m.run_with_cache(PROMPT, names=["blocks.1.hook_resid_pre"])
    manual = torch.softmax(m.unembed(m.apply_ln_final(cache["resid_pre", 1]))[0].float(), -1)
    assert torch.allclose(r.probs[1], manual, atol=1e-6)
    assert r.top_ids[1][0][0] == int(manual[0].argmax())


def test_tuned_lens_trains_saves_and_loads(tiny_llama, tmp_path):
    params = list(tiny_llama.hf_model.parameters())
    params[0].requires_grad_(True)  # a user who unfroze one weight gets it back unfrozen
    before = [p.requires_grad for p in params]
    try:
        lens, losses = train_tuned_lens(tiny_llama, [PROMPT, "Hello world", "abc abc abc"], steps=15, lr=1e-2)
        assert [p.requires_grad for p in params] == before  # restored after training
    finally:
        params[0].requires_grad_(False)
    assert losses[-1] < losses[0]
    path = lens.save(tmp_path / "lens.safetensors")
    again = TunedLens.load(path)
    r1 = logit_lens(tiny_llama, PROMPT, tuned=lens)
    r2 = logit_lens(tiny_llama, PROMPT, tuned=again)
    assert r1.top_ids == r2.top_ids and r1.lens == "tuned"
    assert max(r1.kl_to_final[-1]) <= 1e-6  # the final layer has no translator
