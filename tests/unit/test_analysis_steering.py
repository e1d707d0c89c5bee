"""Steering vectors and alpha sweeps on a tiny model."""

from __future__ import annotations

import torch

from neuroscope.analysis import figures
from neuroscope.analysis.steering import steering_sweep, steering_vector, word_margin
from neuroscope.interventions import Steer

POS, NEG, NEUTRAL = ["good day", "nice one"], ["bad day", "awful one"], ["the x", "a y", "it is"]


def test_vector_is_difference_of_last_token_means(tiny_llama):
    m = tiny_llama
    v = steering_vector(m, POS, NEG, layer=1)
    _, cache = m.run_with_cache(POS + NEG, names=["blocks.1.hook_resid_pre"])
    tokens = m.tokenize(POS + NEG)
    last = cache["resid_pre", 1][torch.arange(4), tokens.last_positions]
    assert torch.allclose(v, last[:2].mean(0) - last[2:].mean(0), atol=1e-5)


def test_sweep_matches_steer_intervention(tiny_llama, tmp_path):
    m = tiny_llama
    v = steering_vector(m, POS, NEG, layer=1)
    r = steering_sweep(
        m, v, 1, NEUTRAL, ["g", "n"], ["b", "a"], alphas=[-1, 1], n_generate=1, max_new_tokens=3
    )
    assert r.alphas == [-1.0, 0.0, 1.0] and r.delta[1] == 0.0
    ids = lambda ws: [m.tokenizer.encode(w, add_special_tokens=False)[0] for w in ws]  # noqa: E731
    manual = word_margin(
        m, NEUTRAL, sorted(ids(["g", "n"])), sorted(ids(["b", "a"])), [Steer(1, v, alpha=1.0)]
    )
    assert abs(float(manual.mean()) - r.margin[2]) < 1e-5
    for d, (lo, hi) in zip(r.delta, r.delta_ci, strict=False):
        assert lo - 1e-9 <= d <= hi + 1e-9
    assert set(r.generations) == {"-1.0", "0.0", "1.0"} or set(r.generations) == {"-1", "0", "1"}
    figures.write(r.figure(), tmp_path / "steer.html")
