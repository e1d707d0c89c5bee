"""Induction and previous-token scores, in-context loss, and head ablation on BOS + X + X sequences.

The scores are the analysis library's (:func:`neuroscope.analysis.attention.score_heads`, the one head scorer):
a head's induction score is the attention mass it puts, from each query that has one, on the token after an
earlier occurrence of the query's token, averaged over those queries; its previous-token score its mean
attention from ``i`` to ``i - 1``. On BOS + X + X with no token repeated inside X the induction queries are
exactly the repeated half and the one target of position ``i`` is ``i - len(X) + 1`` (TransformerLens's
head-detector demo); a token repeated inside X adds its own queries and targets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from neuroscope.analysis.attention import score_heads
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
    patterns: Float[torch.Tensor, "layer batch head q k"], tokens: Int[torch.Tensor, "batch pos"]
) -> tuple[Float[torch.Tensor, "layer head"], Float[torch.Tensor, "layer head"]]:
    """(induction, previous-token) score of every head, from its patterns on ``tokens``."""
    per_layer = [score_heads(p, tokens)[0] for p in patterns]
    induction = torch.stack([s["induction"] for s in per_layer])
    return induction, torch.stack([s["previous_token"] for s in per_layer])


def head_scores(model: Any, tokens: Int[torch.Tensor, "batch pos"]):
    """(induction, previous-token) scores ``[layer, head]`` of ``model`` on ``tokens`` (BOS + X + X)."""
    return scores_from_patterns(attention_patterns(model, tokens), tokens)


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
