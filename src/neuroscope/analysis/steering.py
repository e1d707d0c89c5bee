"""Steering vectors: the difference of means between two prompt sets, and a sweep over the strength alpha."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float

from neuroscope.analysis import figures
from neuroscope.analysis._util import bootstrap_ci, first_token_id, last_logits
from neuroscope.errors import InvalidConfigError
from neuroscope.interventions import Steer

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


def mean_activation(
    model: HookedModel, prompts: Sequence[str], layer: int, site: str = "resid_pre", batch_size: int = 16
) -> Float[torch.Tensor, " d_model"]:
    """Mean residual stream at each prompt's last real token."""
    return mean_activations(model, prompts, [layer], site, batch_size)[0]


def mean_activations(
    model: HookedModel,
    prompts: Sequence[str],
    layers: Sequence[int],
    site: str = "resid_pre",
    batch_size: int = 16,
) -> Float[torch.Tensor, "layer d_model"]:
    """Mean residual stream at each prompt's last real token, for several layers from one forward per batch."""
    if not layers:
        raise InvalidConfigError("mean_activations needs at least one layer")
    for layer in layers:
        model.check_layer(layer)
    names = [f"blocks.{layer}.hook_{site}" for layer in layers]
    total: torch.Tensor | None = None
    count = 0
    for i in range(0, len(prompts), batch_size):
        batch = list(prompts[i : i + batch_size])
        tokens = model.tokenize(batch)
        rows = torch.arange(len(batch))
        with torch.no_grad():
            _, cache = model.run_with_cache(batch, names=names, stop_at_layer=max(layers) + 1)
        act = torch.stack([cache[n][rows, tokens.last_positions].float().sum(0) for n in names])
        total = act if total is None else total + act
        count += len(batch)
    if total is None:
        raise InvalidConfigError("mean_activation needs at least one prompt")
    return total / count


def steering_vector(
    model: HookedModel, positive: Sequence[str], negative: Sequence[str], layer: int, site: str = "resid_pre"
) -> Float[torch.Tensor, " d_model"]:
    if not positive or not negative:
        raise InvalidConfigError("steering_vector needs prompts in both sets")
    return (mean_activation(model, positive, layer, site) - mean_activation(model, negative, layer, site)).to(
        model.dtype
    )


@dataclass
class SteeringResult:
    layer: int
    alphas: list[float]
    margin: list[float]  # mean positive-minus-negative word logit margin at each alpha
    delta: list[float]  # mean per-prompt change of the margin from alpha = 0
    delta_ci: list[tuple[float, float]]  # bootstrap 95% interval of delta
    per_prompt: list[list[float]]  # [alpha][prompt] margin
    vector_norm: float
    generations: dict[str, list[str]]  # alpha -> sample continuations
    n_prompts: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def figure(self):
        lo = [c[0] for c in self.delta_ci]
        hi = [c[1] for c in self.delta_ci]
        return figures.lines(
            self.alphas,
            {"Δ margin": self.delta},
            bands={"Δ margin": (lo, hi)},
            title=f"steering at layer {self.layer}: positive − negative word logit margin",
            xlabel="alpha",
            ylabel="Δ margin vs alpha 0",
        )


def word_margin(
    model: HookedModel,
    prompts: Sequence[str],
    pos_ids: list[int],
    neg_ids: list[int],
    interventions: Sequence[Any] = (),
    batch_size: int = 32,
) -> np.ndarray:
    """Per prompt: mean logit of the positive words minus mean logit of the negative words, at the last token."""
    out = []
    for i in range(0, len(prompts), batch_size):
        batch = list(prompts[i : i + batch_size])
        tokens = model.tokenize(batch)
        with torch.no_grad():
            logits = model.run_with_hooks(batch, interventions=interventions)
        last = last_logits(logits, tokens).float()
        out.append((last[:, pos_ids].mean(-1) - last[:, neg_ids].mean(-1)).cpu())
    return torch.cat(out).numpy()


def steering_sweep(
    model: HookedModel,
    vector: torch.Tensor,
    layer: int,
    prompts: Sequence[str],
    positive_words: Sequence[str],
    negative_words: Sequence[str],
    alphas: Sequence[float] = (-4, -2, -1, 0, 1, 2, 4),
    site: str = "resid_pre",
    n_generate: int = 2,
    max_new_tokens: int = 12,
    seed: int = 0,
) -> SteeringResult:
    """Add ``alpha * vector`` at every position of ``layer``; the word margin per alpha with bootstrap intervals."""
    if 0 not in alphas:
        alphas = sorted([*alphas, 0])
    pos_ids = sorted({first_token_id(model, w) for w in positive_words})
    neg_ids = sorted({first_token_id(model, w) for w in negative_words})
    per = []
    gens: dict[str, list[str]] = {}
    for a in alphas:
        ivs = [Steer(layer, vector, alpha=float(a), site=site)] if a != 0 else []
        per.append(word_margin(model, prompts, pos_ids, neg_ids, ivs))
        if n_generate:
            gens[str(a)] = [
                model.generate(p, max_new_tokens=max_new_tokens, interventions=ivs)
                for p in prompts[:n_generate]
            ]
    base = per[list(alphas).index(0)]
    deltas = [p - base for p in per]
    return SteeringResult(
        layer,
        [float(a) for a in alphas],
        [float(p.mean()) for p in per],
        [float(d.mean()) for d in deltas],
        [bootstrap_ci(d, seed=seed) for d in deltas],
        [p.tolist() for p in per],
        float(vector.float().norm()),
        gens,
        len(prompts),
    )
