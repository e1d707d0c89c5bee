"""Induction and previous-token scores, in-context loss, and head ablation on BOS + X + X sequences.

Scores follow TransformerLens's head-detector demo on repeated random tokens: a head's induction score is its
mean attention from each position ``i`` of the repeated half to ``i - seq_len + 1`` (the token after the
previous occurrence of the current token); its previous-token score is its mean attention from ``i`` to
``i - 1`` over the whole sequence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from neuroscope.interventions import Ablate


def _is_pattern(name: str) -> bool:
    return name.endswith("hook_pattern")


@torch.no_grad()
def attention_patterns(
    model: Any, tokens: Int[torch.Tensor, "batch pos"]
) -> Float[torch.Tensor, "layer batch head q k"]:
    """Every layer's attention pattern, from the hooked model's ``blocks.{l}.attn.hook_pattern``."""
    _, cache = model.run_with_cache(tokens, names=_is_pattern)
    return torch.stack([cache["pattern", layer] for layer in range(model.cfg.n_layers)]).float()


def scores_from_patterns(
    patterns: Float[torch.Tensor, "layer batch head q k"], seq_len: int
) -> tuple[Float[torch.Tensor, "layer head"], Float[torch.Tensor, "layer head"]]:
    """(induction, previous-token) score of every head, given patterns on BOS + X + X with ``len(X) == seq_len``."""
    induction = patterns.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., -seq_len:].mean(dim=(1, 3))
    prev = patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, 3))
    return induction, prev


def head_scores(model: Any, tokens: Int[torch.Tensor, "batch pos"], seq_len: int):
    """(induction, previous-token) scores ``[layer, head]`` of ``model`` on ``tokens`` (BOS + X + X)."""
    return scores_from_patterns(attention_patterns(model, tokens), seq_len)


@dataclass(frozen=True)
class InContextLoss:
    """Mean next-token loss predicting the first copy of X and the repeated copy."""

    first_half: float
    repeated_half: float

    @property
    def ratio(self) -> float:
        return self.repeated_half / self.first_half

    def to_dict(self) -> dict[str, float]:
        return {"first_half": self.first_half, "repeated_half": self.repeated_half, "ratio": self.ratio}


@torch.no_grad()
def in_context_loss(
    model: Any, tokens: Int[torch.Tensor, "batch pos"], seq_len: int, interventions: Iterable[Any] = ()
) -> InContextLoss:
    """Loss on the tokens of the first X (predicted from BOS + X[:i]) and of the repeat (predicted with X in context).

    ``per_token[:, i]`` is the loss of predicting token ``i + 1``: indices ``0..seq_len-1`` predict the first copy,
    ``seq_len..2*seq_len-1`` the second.
    """
    per_token = model.loss(tokens, per_token=True, interventions=list(interventions)).float()
    return InContextLoss(
        float(per_token[:, :seq_len].mean()), float(per_token[:, seq_len : 2 * seq_len].mean())
    )


def ablated_in_context_loss(
    model: Any, tokens: Int[torch.Tensor, "batch pos"], seq_len: int, heads: list[tuple[int, int]]
) -> InContextLoss:
    """:func:`in_context_loss` with ``heads`` zero-ablated (``Ablate`` zeroes their ``attn.hook_z``)."""
    return in_context_loss(model, tokens, seq_len, [Ablate(heads=heads)])
