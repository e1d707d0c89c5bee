"""Attention patterns and head classification on tiny models and synthetic patterns."""

from __future__ import annotations

import numpy as np
import torch

from neuroscope.analysis import attention, figures
from neuroscope.interventions import Ablate


def test_detection_patterns_on_a_known_sequence():
    tokens = torch.tensor([[9, 1, 2, 3, 1, 2, 3]])
    det = attention.detection_patterns(tokens)
    ind = det["induction"][0]
    # query 4 holds token 1 (seen at 1): an induction head attends to position 2
    assert ind[4].nonzero().flatten().tolist() == [2]
    assert ind[6].nonzero().flatten().tolist() == [4] or ind[6].nonzero().flatten().tolist() == [1 + 3]
    assert det["duplicate_token"][0, 5].nonzero().flatten().tolist() == [2]
    assert det["previous_token"][0, 3].nonzero().flatten().tolist() == [2]


def test_perfect_heads_score_one_and_tl_caps_induction():
    tokens = torch.tensor([[9, 1, 2, 3, 1, 2, 3]])
    p = tokens.shape[1]
    prev = torch.zeros(p, p)
    prev[0, 0] = 1
    prev[torch.arange(1, p), torch.arange(p - 1)] = 1
    ind = torch.zeros(p, p)
    ind[:, 0] = 1.0
    for q, k in [(4, 2), (5, 3), (6, 4)]:
        ind[q] = 0
        ind[q, k] = 1
    pattern = torch.stack([prev, ind])[None]
    ours, tl = attention.score_heads(pattern, tokens)
    assert ours["previous_token"][0] == 1.0
    assert ours["induction"][1] == 1.0
    assert abs(tl["induction"][1].item() - 3 / 7) < 1e-6  # TransformerLens divides by every query row


def test_patterns_entropy_and_figure(tiny_llama, tmp_path):
    r = attention.attention_patterns(tiny_llama, "abcabc")
    L, H = tiny_llama.cfg.n_layers, tiny_llama.cfg.n_heads
    assert r.patterns.shape[:2] == (L, H)
    assert torch.allclose(r.patterns.sum(-1), torch.ones(r.patterns.shape[:-1]), atol=1e-5)
    ent = np.asarray(r.entropy)
    assert ent.shape == (L, H) and (ent >= 0).all()
    assert all(np.asarray(r.scores[k]).shape == (L, H) for k in attention.KINDS)
    figures.write(r.figure(1, 2), tmp_path / "pattern.html")
    figures.write(r.entropy_figure(), tmp_path / "entropy.html")


def test_classification_and_batched_ablation_match_interventions(tiny_llama, tmp_path):
    m = tiny_llama
    c = attention.classify_heads(m, n_seqs=3, half_len=10, seed=0)
    assert len(c.top("induction", 3)) == 3
    a = attention.induction_ablation(m, c, k=2, n_draws=4, n_seqs=2, half_len=10, seed=1)
    assert len(a.random_deltas) == 4
    # the batched per-row head mask equals running Ablate on its own
    ids = attention.repeated_random_tokens(m, 2, 10, 1 + 1000)
    with torch.no_grad():
        clean = m.loss(ids, per_token=True)[:, -(10 - 1) :].mean()
        ablated = m.loss(ids, per_token=True, interventions=[Ablate(heads=a.top_heads)])[
            :, -(10 - 1) :
        ].mean()
    assert abs(float(clean) - a.clean_loss) < 1e-4
    assert abs(float(ablated - clean) - a.top_delta) < 1e-4
    figures.write(c.figure(), tmp_path / "heads.html")
    figures.write(a.figure(), tmp_path / "ablation.html")
    assert set(a.to_dict()) >= {"top_delta", "random_ci", "ratio"}


def test_tl_normalisation_equals_transformer_lens_head_detector(tiny_llama):
    """``normalise="tl"`` is TransformerLens's own score: its detection patterns and its "mul" similarity."""
    from transformer_lens import head_detector as hd

    m = tiny_llama
    ids = attention.repeated_random_tokens(m, 1, 8, seed=3)
    ours = attention.head_scores(m, ids, normalise="tl")
    _, cache = m.run_with_cache(ids, names=lambda n: n.endswith("hook_pattern"))
    tl_patterns = {
        "previous_token": hd.get_previous_token_head_detection_pattern(ids.cpu()),
        "duplicate_token": hd.get_duplicate_token_head_detection_pattern(ids.cpu()),
        "induction": hd.get_induction_head_detection_pattern(ids.cpu()),
    }
    for kind, det in tl_patterns.items():
        for l in range(m.cfg.n_layers):
            for h in range(m.cfg.n_heads):
                want = hd.compute_head_attention_similarity_score(
                    cache["pattern", l][0, h],
                    det,
                    exclude_bos=False,
                    exclude_current_token=False,
                    error_measure="mul",
                )
                assert abs(float(ours[kind][l, h]) - want) < 1e-6, (kind, l, h)
    rows = attention.head_scores(m, ids)  # the headline normalisation: only rows that have a target
    assert float(rows["induction"].max()) > float(ours["induction"].max())
