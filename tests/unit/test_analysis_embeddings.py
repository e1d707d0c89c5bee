"""The embedding explorer's library: PCA map, similarity clusters, neighbours and analogies."""

from __future__ import annotations

import pytest
import torch

import neuroscope as ns
from neuroscope.analysis import embeddings
from neuroscope.errors import InvalidConfigError


def test_map_keeps_distances_and_works_on_every_adapter(any_tiny):
    words = ["cat", "dog", "sun", "moon"]
    r = embeddings.embedding_map(any_tiny, words)
    _, vecs = embeddings.word_vectors(any_tiny, words)
    # four centred points span at most three dimensions: the 3D PCA map keeps every pairwise distance
    coords = torch.tensor(r.coords)
    assert coords.shape == (4, 3)
    assert torch.allclose(torch.cdist(coords, coords), torch.cdist(vecs, vecs), atol=1e-4)
    assert abs(sum(r.explained_variance_ratio) - 1.0) < 1e-5
    sim = torch.tensor(r.similarity)
    assert torch.allclose(
        sim, torch.nn.functional.cosine_similarity(vecs[:, None], vecs[None], dim=-1), atol=1e-5
    )
    assert len(r.clusters) == 4 and r.clusters[0] == 0
    fig = r.figure()
    assert fig.data[0].type == "scatter3d" and list(fig.data[0].text) == words


def test_clusters_cut_at_the_widest_gap_or_a_threshold():
    sim = torch.tensor(
        [
            [1.0, 0.8, 0.1, 0.0],
            [0.8, 1.0, 0.0, 0.1],
            [0.1, 0.0, 1.0, 0.7],
            [0.0, 0.1, 0.7, 1.0],
        ]
    )
    assert embeddings.similarity_clusters(sim) == [0, 0, 1, 1]
    assert embeddings.similarity_clusters(sim, threshold=0.75) == [0, 0, 1, 2]
    assert embeddings.similarity_clusters(sim, threshold=-1.0) == [0, 0, 0, 0]
    assert embeddings.similarity_clusters(sim[:2, :2]) == [0, 0]
    assert embeddings.similarity_clusters(torch.tensor([[1.0, 0.2], [0.2, 1.0]])) == [0, 1]


def _planted() -> ns.HookedModel:
    """A fresh tiny model whose embeddings hold an exact analogy: d = a − b + c."""
    model = ns.load_model("tiny:llama", device="cpu")
    ids = {w: embeddings.resolve_word(model, w).token_ids for w in "abcd"}
    assert all(len(v) == 1 for v in ids.values())
    with torch.no_grad():
        E = model.W_E
        g = torch.Generator().manual_seed(0)
        for w in "abc":
            E[ids[w][0]] = torch.randn(E.shape[1], generator=g) * 3
        E[ids["d"][0]] = E[ids["a"][0]] - E[ids["b"][0]] + E[ids["c"][0]]
    return model


def test_analogy_finds_a_planted_answer():
    model = _planted()
    r = embeddings.analogy(model, "a", "b", "c", expected="d", k=5)
    d = embeddings.resolve_word(model, "d").token_ids[0]
    assert r.ranked[0][1] == d and r.ranked[0][2] == pytest.approx(1.0, abs=1e-5)
    assert r.expected_rank == 1 and r.expected_cosine == pytest.approx(1.0, abs=1e-5)
    assert r.offset_cosine == pytest.approx(1.0, abs=1e-5)  # a − b is exactly d − c
    excluded = {embeddings.resolve_word(model, w).token_ids[0] for w in "abc"}
    assert not excluded & {i for _, i, _ in r.ranked}


def test_neighbours_are_the_brute_force_cosine_ranking(tiny_llama):
    r = embeddings.word_neighbours(tiny_llama, "e", k=4)
    i = r.word.token_ids[0]
    E = tiny_llama.W_E.float()
    sims = torch.nn.functional.cosine_similarity(E, E[i][None], dim=-1)
    sims[i] = -2
    assert [j for _, j, _ in r.neighbours] == sims.topk(4).indices.tolist()
    assert [c for *_, c in r.neighbours] == pytest.approx(sims.topk(4).values.tolist(), abs=1e-5)


def test_words_resolve_like_a_reader_expects(tiny_llama):
    w = embeddings.resolve_word(tiny_llama, "  banana ")
    assert w.text == "banana" and w.multi_token == (len(w.token_ids) > 1)
    with pytest.raises(InvalidConfigError, match="empty word"):
        embeddings.resolve_word(tiny_llama, "   ")
    with pytest.raises(InvalidConfigError, match="at least two words"):
        embeddings.embedding_map(tiny_llama, ["one"])
    with pytest.raises(InvalidConfigError, match="matrix"):
        embeddings.embedding_map(tiny_llama, ["a", "b"], matrix="W_Q")
