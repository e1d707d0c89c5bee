"""The embedding explorer: words the user types as points in 3D, their clusters, neighbours and analogies.

Everything here reads one matrix of token vectors (``W_E`` by default, or the unembedding ``W_U``) through
``geometry``: the one PCA (``geometry.pca``) and the one cosine nearest-neighbour search
(``geometry.nearest_to``). A typed word becomes a vector as a reader would expect a language model to see it
mid-sentence: the space-prefixed token (``" king"``) when that is one token, else the bare word when that is
one token, else the mean of the space-prefixed word's tokens (flagged ``multi_token``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float

from neuroscope.analysis.geometry import embedding_matrix, nearest_to, pca
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

MAX_WORDS = 64


@dataclass(frozen=True)
class Word:
    text: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]

    @property
    def multi_token(self) -> bool:
        return len(self.token_ids) > 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "tokens": list(self.tokens),
            "multi_token": self.multi_token,
        }


def resolve_word(model: HookedModel, text: str) -> Word:
    """The token(s) that stand for ``text`` (see the module docstring for the rule)."""
    word = text.strip()
    if not word:
        raise InvalidConfigError("An empty word has no embedding; type at least one character.")
    enc = model.tokenizer.encode
    spaced = enc(" " + word, add_special_tokens=False)
    bare = enc(word, add_special_tokens=False)
    ids = spaced if len(spaced) == 1 else bare if len(bare) == 1 else spaced
    if not ids:
        raise InvalidConfigError(f"{word!r} encodes to no tokens for this tokenizer.")
    dec = model.tokenizer.decode
    return Word(word, tuple(int(i) for i in ids), tuple(dec([int(i)]) for i in ids))


def word_vectors(
    model: HookedModel, words: Sequence[str], matrix: str = "W_E"
) -> tuple[list[Word], Float[torch.Tensor, "n d_model"]]:
    resolved = [resolve_word(model, w) for w in words]
    w = embedding_matrix(model, matrix)
    with torch.no_grad():
        vecs = torch.stack([w[list(r.token_ids)].mean(0) for r in resolved])
    return resolved, vecs


def cosine_matrix(x: Float[torch.Tensor, "n d"]) -> Float[torch.Tensor, "n n"]:
    xn = x.float() / x.float().norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return xn @ xn.T


def similarity_clusters(sim: Float[torch.Tensor, "n n"], threshold: float | None = None) -> list[int]:
    """Average-linkage clustering on cosine similarity; cluster ids numbered by first appearance.

    Clusters merge while their average similarity is at least ``threshold``. Without a threshold the cut
    goes at the largest drop between successive merge similarities (the widest gap in the dendrogram), so
    related words group and unrelated ones stay apart whatever the model's typical cosine level is.
    """
    n = sim.shape[0]
    if n == 0:
        return []
    groups: list[list[int]] = [[i] for i in range(n)]
    history: list[tuple[float, list[list[int]]]] = [(1.0, [g[:] for g in groups])]
    while len(groups) > 1:
        best, pair = -float("inf"), (0, 1)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                s = float(sim[groups[a]][:, groups[b]].mean())
                if s > best:
                    best, pair = s, (a, b)
        a, b = pair
        groups = [g for i, g in enumerate(groups) if i not in pair] + [groups[a] + groups[b]]
        history.append((best, [g[:] for g in groups]))
    if threshold is not None:
        chosen = history[0][1]
        for height, state in history[1:]:
            if height < threshold:
                break
            chosen = state
    elif n < 3:
        # one merge leaves no gap to compare: two words share a cluster when their cosine is at least 0.5
        chosen = history[-1][1] if n == 2 and history[-1][0] >= 0.5 else history[0][1]
    else:
        # merge heights fall as clusters grow; cut before the biggest fall (never keep all in one)
        heights = [h for h, _ in history[1:]]
        drops = [heights[i] - heights[i + 1] for i in range(len(heights) - 1)]
        cut = max(range(len(drops)), key=lambda i: drops[i]) if drops else 0
        chosen = history[1 + cut][1]
    ids: dict[int, int] = {}
    out = []
    for i in range(n):
        root = min(next(g for g in chosen if i in g))
        ids.setdefault(root, len(ids))
        out.append(ids[root])
    return out


@dataclass
class EmbeddingMap:
    words: list[Word]
    coords: list[list[float]]  # [word][component]
    explained_variance_ratio: list[float]
    similarity: list[list[float]]  # cosine, [word][word]
    clusters: list[int]
    matrix: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "words": [w.to_dict() for w in self.words],
            "coords": self.coords,
            "explained_variance_ratio": self.explained_variance_ratio,
            "similarity": self.similarity,
            "clusters": self.clusters,
            "matrix": self.matrix,
        }

    def figure(self):
        import plotly.graph_objects as go
        from plotly.colors import qualitative

        palette = qualitative.Set1
        pad = [c + [0.0] * (3 - len(c)) for c in self.coords]
        ev = self.explained_variance_ratio + [0.0] * (3 - len(self.explained_variance_ratio))
        fig = go.Figure(
            go.Scatter3d(
                x=[c[0] for c in pad],
                y=[c[1] for c in pad],
                z=[c[2] for c in pad],
                mode="markers+text",
                text=[w.text for w in self.words],
                marker={"size": 6, "color": [palette[c % len(palette)] for c in self.clusters]},
            )
        )
        fig.update_layout(
            title=f"PCA of {self.matrix} rows (colour = similarity cluster)",
            scene={f"{a}axis": {"title": f"PC{i + 1} ({ev[i]:.0%})"} for i, a in enumerate("xyz")},
        )
        return fig


def embedding_map(
    model: HookedModel,
    words: Sequence[str],
    n_components: int = 3,
    matrix: str = "W_E",
    threshold: float | None = None,
) -> EmbeddingMap:
    """The words as points (PCA of their vectors), their cosine similarities and similarity clusters."""
    words = [w for w in words if w.strip()]
    if len(words) < 2:
        raise InvalidConfigError("The embedding map needs at least two words (e.g. king queen man woman).")
    if len(words) > MAX_WORDS:
        raise InvalidConfigError(f"The embedding map takes at most {MAX_WORDS} words, got {len(words)}.")
    resolved, vecs = word_vectors(model, words, matrix)
    coords, ev = pca(vecs, n_components)
    sim = cosine_matrix(vecs)
    return EmbeddingMap(
        words=resolved,
        coords=coords.tolist(),
        explained_variance_ratio=ev.tolist(),
        similarity=sim.tolist(),
        clusters=similarity_clusters(sim, threshold),
        matrix=matrix,
    )


@dataclass
class WordNeighbours:
    word: Word
    neighbours: list[tuple[str, int, float]]  # (token, id, cosine)

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word.to_dict(), "neighbours": [list(n) for n in self.neighbours]}

    def figure(self):
        from neuroscope.analysis import figures

        return figures.bars(
            [n[0] for n in self.neighbours],
            [n[2] for n in self.neighbours],
            title=f"nearest neighbours of {self.word.text!r}",
            ylabel="cosine",
        )


def word_neighbours(model: HookedModel, word: str, k: int = 10, matrix: str = "W_E") -> WordNeighbours:
    resolved, vecs = word_vectors(model, [word], matrix)
    return WordNeighbours(
        resolved[0], nearest_to(model, vecs[0], k, exclude=resolved[0].token_ids, matrix=matrix)
    )


@dataclass
class Analogy:
    a: Word
    b: Word
    c: Word
    expected: Word | None
    ranked: list[tuple[str, int, float]]  # a − b + c's nearest tokens, a/b/c excluded
    expected_rank: int | None  # 1-based rank of the expected answer among all tokens (a/b/c excluded)
    expected_cosine: float | None
    offset_cosine: float | None  # cos(a − b, expected − c): how parallel the two offsets are

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "c": self.c.to_dict(),
            "expected": None if self.expected is None else self.expected.to_dict(),
            "ranked": [list(r) for r in self.ranked],
            "expected_rank": self.expected_rank,
            "expected_cosine": self.expected_cosine,
            "offset_cosine": self.offset_cosine,
        }

    def figure(self):
        from neuroscope.analysis import figures

        return figures.bars(
            [r[0] for r in self.ranked],
            [r[2] for r in self.ranked],
            title=f"{self.a.text} − {self.b.text} + {self.c.text}",
            ylabel="cosine",
        )


def analogy(
    model: HookedModel,
    a: str,
    b: str,
    c: str,
    expected: str | None = None,
    k: int = 10,
    matrix: str = "W_E",
) -> Analogy:
    """``a − b + c`` (king − man + woman) ranked against the vocabulary by cosine, the three inputs left out
    as is usual for word analogies; with ``expected`` (queen) its rank and the offsets' parallelism."""
    words = [a, b, c] + ([expected] if expected else [])
    resolved, vecs = word_vectors(model, words, matrix)
    query = vecs[0] - vecs[1] + vecs[2]
    exclude = sorted({i for r in resolved[:3] for i in r.token_ids})
    ranked = nearest_to(model, query, k, exclude=exclude, matrix=matrix)
    rank = cos = offset = None
    exp = resolved[3] if expected else None
    if exp is not None:
        w = embedding_matrix(model, matrix)
        with torch.no_grad():
            sims = (w @ query) / (w.norm(dim=-1) * query.norm()).clamp_min(1e-8)
            sims[torch.as_tensor(exclude)] = -2.0
            # rank against single tokens: a multi-token expected word is scored by its mean vector
            if exp.multi_token:
                target = float(torch.nn.functional.cosine_similarity(vecs[3], query, dim=0))
            else:
                target = float(sims[exp.token_ids[0]])
            rank = int((sims > target).sum()) + 1
            cos = target
            offset = float(torch.nn.functional.cosine_similarity(vecs[0] - vecs[1], vecs[3] - vecs[2], dim=0))
    return Analogy(resolved[0], resolved[1], resolved[2], exp, ranked, rank, cos, offset)
