"""Next-token predictions, and how an intervention moved them: top-k with logit and probability deltas, KL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float

from neuroscope.analysis import figures

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


def top_tokens(model: HookedModel, logits: Float[torch.Tensor, " d_vocab"], k: int) -> list[dict[str, Any]]:
    """The ``k`` most likely next tokens: id, text, logit and probability."""
    logits = logits.float()
    probs = torch.softmax(logits, -1)
    vals, idx = probs.topk(min(k, probs.shape[-1]))
    return [
        {
            "token_id": int(i),
            "token": model.tokenizer.decode([int(i)]),
            "logit": float(logits[i]),
            "prob": float(v),
        }
        for v, i in zip(vals, idx, strict=True)
    ]


def kl_divergence(base: Float[torch.Tensor, " d_vocab"], new: Float[torch.Tensor, " d_vocab"]) -> float:
    """KL(base || new) in nats between the next-token distributions of two logit vectors."""
    pb, pn = torch.log_softmax(base.float(), -1), torch.log_softmax(new.float(), -1)
    return float((pb.exp() * (pb - pn)).sum().clamp_min(0.0))


@dataclass
class NextTokenComparison:
    """Top-k of ``new`` with each token's change against ``base``, the baseline's own top-k, and KL(base || new)."""

    top: list[dict[str, Any]]
    baseline: list[dict[str, Any]]
    kl: float

    def to_dict(self) -> dict[str, Any]:
        return {"top": self.top, "baseline": self.baseline, "kl": self.kl}

    def figure(self):
        return figures.bars(
            [t["token"] for t in self.top],
            [t["delta_prob"] for t in self.top],
            title=f"change in next-token probability (KL {self.kl:.3g} nats)",
            ylabel="Δ probability",
        )


def compare_next_token(
    model: HookedModel, base: Float[torch.Tensor, " d_vocab"], new: Float[torch.Tensor, " d_vocab"], k: int
) -> NextTokenComparison:
    base_lp = torch.log_softmax(base.float(), -1)
    top = []
    for t in top_tokens(model, new, k):
        i = t["token_id"]
        bl, bp = float(base[i]), float(base_lp[i].exp())
        top.append(
            {
                **t,
                "base_logit": bl,
                "base_prob": bp,
                "delta_logit": t["logit"] - bl,
                "delta_prob": t["prob"] - bp,
            }
        )
    return NextTokenComparison(top, top_tokens(model, base, k), kl_divergence(base, new))
