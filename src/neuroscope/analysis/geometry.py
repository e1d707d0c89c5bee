"""Embedding geometry: cosine nearest neighbours, PCA of token embeddings and of a prompt's residual trajectory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float

from neuroscope.analysis import figures
from neuroscope.analysis._util import token_id, tolist
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass
class Neighbours:
    token: str
    neighbours: list[tuple[str, int, float]]  # (token, id, cosine)

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "neighbours": [list(n) for n in self.neighbours]}

    def figure(self):
        return figures.bars(
            [n[0] for n in self.neighbours],
            [n[2] for n in self.neighbours],
            title=f"nearest neighbours of {self.token!r} in the embedding",
            ylabel="cosine",
        )


def nearest_neighbours(model: HookedModel, token: str | int, k: int = 10, matrix: str = "W_E") -> Neighbours:
    """Tokens whose embedding (``W_E``) or unembedding (``W_U``) row is closest in cosine."""
    i = token_id(model, token)
    with torch.no_grad():
        w = embedding_matrix(model, matrix)
        neighbours = nearest_to(model, w[i], k, exclude=[i], matrix=matrix)
    return Neighbours(model.tokenizer.decode([i]), neighbours)


def embedding_matrix(model: HookedModel, matrix: str = "W_E") -> Float[torch.Tensor, "d_vocab d_model"]:
    """The token vectors that geometry works on: the embedding rows or the unembedding columns."""
    if matrix not in ("W_E", "W_U"):
        raise InvalidConfigError(f"matrix must be 'W_E' or 'W_U', got {matrix!r}")
    return (model.W_E if matrix == "W_E" else model.W_U.T).float()


def nearest_to(
    model: HookedModel,
    vector: Float[torch.Tensor, " d_model"],
    k: int = 10,
    exclude: Sequence[int] = (),
    matrix: str = "W_E",
) -> list[tuple[str, int, float]]:
    """The ``k`` vocabulary tokens whose vectors are closest in cosine to ``vector`` (``exclude`` left out):
    the one nearest-neighbour search behind token neighbours and analogies."""
    if k < 1:
        raise InvalidConfigError(f"k must be at least 1, got {k}")
    with torch.no_grad():
        w = embedding_matrix(model, matrix)
        sims = (w @ vector.float()) / (w.norm(dim=-1) * vector.float().norm()).clamp_min(1e-8)
        if exclude:
            sims[torch.as_tensor(list(exclude), dtype=torch.long)] = -2.0
        vals, ids = sims.topk(min(k, sims.shape[0]))
    dec = model.tokenizer.decode
    return [(dec([int(j)]), int(j), float(v)) for v, j in zip(vals, ids, strict=False)]


@dataclass
class PCAResult:
    labels: list[str]
    coords: list[list[float]]  # [point][component]
    explained_variance_ratio: list[float]
    title: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def figure(self):
        xs = [c[0] for c in self.coords]
        ys = [c[1] if len(c) > 1 else 0.0 for c in self.coords]
        ev = self.explained_variance_ratio
        return figures.scatter(
            xs,
            ys,
            self.labels,
            title=self.title,
            xlabel=f"PC1 ({ev[0]:.1%})",
            ylabel=f"PC2 ({ev[1]:.1%})" if len(ev) > 1 else "PC2",
        )


def pca(x: Float[torch.Tensor, "n d"], n_components: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(coordinates [n, k], explained variance ratio [k]) by SVD of the centred data."""
    x = x.float()
    xc = x - x.mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    k = min(n_components, s.shape[0])
    var = s.pow(2)
    return u[:, :k] * s[:k], var[:k] / var.sum().clamp_min(1e-12)


def embedding_pca(model: HookedModel, tokens: Sequence[str | int], n_components: int = 2) -> PCAResult:
    if len(tokens) < 2:
        raise InvalidConfigError("PCA needs at least two tokens")
    ids = [token_id(model, t) for t in tokens]
    with torch.no_grad():
        coords, ev = pca(model.W_E[ids], n_components)
    dec = model.tokenizer.decode
    return PCAResult([dec([i]) for i in ids], tolist(coords), tolist(ev), "PCA of token embeddings")


def trajectory_pca(model: HookedModel, prompt: str, position: int = -1, n_components: int = 2) -> PCAResult:
    """PCA of the residual stream at ``position`` across layers (one point per layer)."""
    names = model.resid_stream_names()
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt, names=names)
        stack, labels = cache.accumulated_resid(return_labels=True)
        coords, ev = pca(stack[:, 0, position], n_components)
    return PCAResult(
        labels, tolist(coords), tolist(ev), f"residual trajectory of token {position} across layers"
    )
