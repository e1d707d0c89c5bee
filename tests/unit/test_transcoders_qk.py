"""QK attribution: the node pairs sum to the head's own pre-softmax score, on every adapter's tiny model."""

from __future__ import annotations

import pytest
import torch
from tc_testutil import PROMPT, random_transcoders

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError
from neuroscope.transcoders.qk import qk_attribution, residual_parts


def test_pairs_sum_to_the_score_on_every_adapter(any_tiny):
    tcs = random_transcoders(any_tiny)
    layer, head = 1, any_tiny.cfg.n_heads - 1
    for q, k in ((-1, 2), (5, 5), (3, 0)):
        r = qk_attribution(any_tiny, tcs, PROMPT, layer, head, q, k)
        assert r.pair_sum == pytest.approx(r.score, rel=1e-4, abs=1e-5)
        # the per-side totals are the pairs summed over the other side
        assert float(r.query_totals.sum()) == pytest.approx(r.score, rel=1e-4, abs=1e-5)
        kinds = {n.kind for n in r.query_nodes}
        assert {"token", "attn", "feature", "error", "bias"} <= kinds
    # GQA: the key side is the kv head this query head shares
    assert r.kv_head == head // (any_tiny.cfg.n_heads // any_tiny.cfg.n_kv_heads)


def test_residual_parts_sum_to_resid_pre(tiny_gpt2):
    tcs = random_transcoders(tiny_gpt2, layers=[0])  # layer 1's MLP has no transcoder: one ``mlp`` node
    _, cache = tiny_gpt2.run_with_cache(PROMPT)
    nodes, parts = residual_parts(tiny_gpt2, tcs, cache, 2, 4)
    assert torch.allclose(parts.sum(0), cache["blocks.1.hook_resid_post"][0, 4], atol=1e-5)
    assert [n.id for n in nodes if n.kind in ("pos_embed", "mlp")] == ["p_4", "m_1_4"]
    acts = tcs[0].encode(cache["blocks.0.ln2.hook_normalized"][0, 4])
    feats = [n for n in nodes if n.kind == "feature"]
    assert [n.feature for n in feats] == acts.nonzero().flatten().tolist()
    assert feats[0].id == f"f_0_4_{feats[0].feature}"


def test_report_and_bad_positions(tiny_llama):
    tcs = random_transcoders(tiny_llama)
    r = qk_attribution(tiny_llama, tcs, PROMPT, 1, 0, -1, 1, top=5)
    d = r.to_dict()
    assert len(d["top_pairs"]) == 5 and len(d["query_nodes"]) == 5
    assert abs(d["top_pairs"][0]["value"]) == pytest.approx(float(r.pairs.abs().max()))
    assert d["query_pos"] == len(d["tokens"]) - 1 and 0 < d["pattern"] < 1
    with pytest.raises(InvalidConfigError, match="after query position"):
        qk_attribution(tiny_llama, tcs, PROMPT, 1, 0, 2, 5)
    with pytest.raises(IndexOutOfRangeError, match="query position"):
        qk_attribution(tiny_llama, tcs, PROMPT, 1, 0, 99, 0)
    with pytest.raises(IndexOutOfRangeError, match="head"):
        qk_attribution(tiny_llama, tcs, PROMPT, 1, 9, -1, 0)
