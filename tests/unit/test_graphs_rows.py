"""A provenance run keeps no attention pattern: each block's queries and keys (linear in the prompt), from which
the rows of its nodes' positions are computed exactly as the eager kernel computes the whole pattern, on every
adapter (RoPE, GQA, GPT-2, Gemma's soft-capping, sliding windows past their width), while the forward itself
takes SDPA."""

from __future__ import annotations

import pytest
import torch
from graphs_testutil import PROMPT, tiny64

from neuroscope.graphs import streams
from neuroscope.models import attention
from neuroscope.models.tiny import TINY_TYPES

LONG = " ".join([PROMPT] * 3)  # past the tiny models' sliding window (128 positions)


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_rows_equal_the_eager_pattern_past_the_sliding_window(model_type):
    model = tiny64(model_type)
    tokens = model.to_tokens(LONG)[0]
    n = tokens.shape[0]
    assert n > 128 + 32
    names = [f"blocks.{b}.attn.hook_pattern" for b in range(2)]
    _, cache = model.run_with_cache(tokens[None], names=names)
    run = streams.clean_run(model, tokens, 0, 2, None)
    rows = [n - 1, 0, 140, n - 1]
    for b in range(2):
        full = cache[names[b]][0]
        assert run.attn[b].mask is None  # causal and sliding masks are kept as one key interval per row
        torch.testing.assert_close(run.pattern_rows(b, rows), full[:, rows], atol=1e-12, rtol=0)
        if b == 0 and model_type in ("mistral", "gemma2", "gemma3_text"):  # a sliding layer
            assert int((full[:, n - 1] > 0).sum(-1).max()) <= 128 < n


def test_the_kept_attention_grows_with_the_prompt_not_its_square(monkeypatch):
    model = tiny64("mistral")
    c = model.cfg
    # the forward takes SDPA: the eager kernel (the only one that builds [head, pos, pos]) is never called
    monkeypatch.setattr(attention, "eager_attention", lambda *a, **k: pytest.fail("eager attention ran"))
    kept = {}
    for chars in (99, 199):  # 100 and 200 tokens (a byte tokenizer and BOS): the second past the window
        tokens = model.to_tokens(((PROMPT + " ") * 4)[:chars])[0]
        run = streams.clean_run(model, tokens, 0, 2, None)
        T = tokens.shape[0]
        kept[T] = run.kept_bytes()["attention"]
        # per block: queries, keys and two interval bounds per query; no [head, pos, pos] pattern
        per_pos = (c.n_heads + c.n_kv_heads) * c.d_head * 8 + 2 * 8
        assert kept[T] == 2 * per_pos * T
        assert kept[T] < c.n_heads * T * T * 8
        assert run.pattern_rows(1, [T - 1, 3]).shape == (c.n_heads, 2, T)
    (t1, b1), (t2, b2) = sorted(kept.items())
    assert t2 == 2 * t1 and b2 == 2 * b1


def test_masks_that_are_not_intervals_are_kept_and_still_give_the_eager_rows():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, 6, 4, generator=gen, dtype=torch.float64) for h in (4, 2, 2))
    holes = torch.ones(6, 6, dtype=torch.bool).tril()
    holes[4, 1] = False  # a hole in row 4: not one interval
    additive = torch.zeros(6, 6, dtype=torch.float64).masked_fill(~holes, torch.finfo(torch.float64).min)
    for mask in (None, holes[None, None], additive[None, None]):
        _, full = attention.eager_attention(None, q, k, v, mask, None, None, scaling=0.5, softcap=3.0)
        seen = attention.AttentionInputs.capture(q, k, mask, scaling=0.5, softcap=3.0)
        assert (seen.mask is None) == (mask is None)
        torch.testing.assert_close(seen.rows([4, 0, 5]), full[:, :, [4, 0, 5]], atol=1e-15, rtol=0)
    assert float(full[0, :, 4, 1].abs().max()) == 0.0
