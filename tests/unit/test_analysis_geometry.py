"""Embedding neighbours and PCA."""

from __future__ import annotations

import torch

from neuroscope.analysis import figures
from neuroscope.analysis.geometry import embedding_pca, nearest_neighbours, pca, trajectory_pca


def test_neighbours_match_brute_force(tiny_llama, tmp_path):
    m = tiny_llama
    r = nearest_neighbours(m, "a", k=3)
    i = m.tokenizer.encode("a", add_special_tokens=False)[0]
    w = torch.nn.functional.normalize(m.W_E.detach().float(), dim=-1)
    sims = w @ w[i]
    sims[i] = -2
    assert [n[1] for n in r.neighbours] == sims.topk(3).indices.tolist()
    figures.write(r.figure(), tmp_path / "nn.html")


def test_pca_explained_variance():
    gen = torch.Generator().manual_seed(0)
    line = torch.randn(50, 1, generator=gen) * torch.randn(1, 8, generator=gen)
    coords, ev = pca(line, 2)
    assert ev[0] > 0.999 and coords.shape == (50, 2)


def test_embedding_and_trajectory_pca(tiny_gpt2, tmp_path):
    r = embedding_pca(tiny_gpt2, list("abcdefgh"))
    assert len(r.coords) == 8 and 0 < sum(r.explained_variance_ratio) <= 1 + 1e-6
    t = trajectory_pca(tiny_gpt2, "hello there")
    assert len(t.coords) == tiny_gpt2.cfg.n_layers + 1
    figures.write(r.figure(), tmp_path / "emb.html")
    figures.write(t.figure(), tmp_path / "traj.html")
