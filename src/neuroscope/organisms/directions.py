"""Difference-of-means directions, their best layer on a validation split, and the two edits along one:
directional ablation (the direction removed from everything written into the residual stream) and addition.

``directional_ablation`` is the one place that decides how a direction is ablated: today with the hooked
``ProjectOut`` intervention; the closed-form LoRA ``ablate`` edit (weight orthogonalisation, issue 12) is
exactly this map for bias-free pre-norm models and can replace it here without touching the case studies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.analysis.steering import mean_activations
from neuroscope.errors import EmptyPromptSetError, InvalidConfigError
from neuroscope.interventions import ProjectOut, Steer
from neuroscope.organisms.generation import encode, padded_logprobs

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


def diff_of_means(
    model: HookedModel,
    positive: Sequence[str],
    negative: Sequence[str],
    site: str = "resid_pre",
    batch_size: int = 16,
) -> torch.Tensor:
    """``[layer, d_model]``: mean last-token activation of ``positive`` minus that of ``negative`` (formatted texts)."""
    if not positive or not negative:
        raise EmptyPromptSetError("A difference of means needs prompts in both sets.")
    layers = list(range(model.cfg.n_layers))
    return mean_activations(model, positive, layers, site, batch_size) - mean_activations(
        model, negative, layers, site, batch_size
    )


def directional_ablation(model: HookedModel, direction: torch.Tensor) -> list[Any]:
    """Remove ``direction`` from the residual stream everywhere a reader sees it: from the embedding (at layer
    0's ``resid_pre``) and from every attention and MLP output, at every position. For linear writers this is
    weight orthogonalisation, W' = (I − r̂r̂ᵀ)W (Arditi et al. 2024)."""
    d = direction.detach().float()
    return [
        ProjectOut(d, layers=[0], site="resid_pre"),
        ProjectOut(d, site="attn_out"),
        ProjectOut(d, site="mlp_out"),
    ]


def add_direction(layer: int, vector: torch.Tensor, alpha: float = 1.0) -> list[Any]:
    """Add ``alpha * vector`` to ``resid_pre`` of ``layer`` at every position (empty at alpha 0)."""
    return [Steer(layer, vector.detach(), alpha=float(alpha))] if alpha else []


@torch.no_grad()
def prefix_logprob(
    model: HookedModel, texts: Sequence[str], prefix: Sequence[int], edit: Any = None, batch_size: int = 16
) -> np.ndarray:
    """Per formatted text: log P(``prefix`` tokens | text) under ``edit`` (teacher forced, one forward)."""
    if not prefix:
        raise InvalidConfigError("prefix_logprob needs at least one prefix token")
    tok = model.tokenizer
    out: list[float] = []
    target = torch.as_tensor(list(prefix))
    k = len(prefix)
    for i in range(0, len(texts), batch_size):
        rows = [encode(tok, t) + list(prefix[:-1]) for t in texts[i : i + batch_size]]
        lp = padded_logprobs(model, rows, edit, k).cpu()
        out += lp.gather(-1, target.expand(lp.shape[0], k).unsqueeze(-1)).squeeze(-1).sum(-1).tolist()
    return np.asarray(out)


@torch.no_grad()
def next_token_logprobs(
    model: HookedModel, texts: Sequence[str], edit: Any = None, batch_size: int = 16
) -> torch.Tensor:
    """``[text, vocab]`` log-probabilities of the token after each formatted text, under ``edit``."""
    tok = model.tokenizer
    out = []
    for i in range(0, len(texts), batch_size):
        rows = [encode(tok, t) for t in texts[i : i + batch_size]]
        out.append(padded_logprobs(model, rows, edit, 1)[:, -1].cpu())
    return torch.cat(out)


def kl_rows(p: torch.Tensor, q: torch.Tensor) -> np.ndarray:
    """Row-wise KL(p || q) of log-probability rows, nats."""
    return (p.exp() * (p - q)).sum(-1).numpy()


@dataclass
class LayerChoice:
    """Per candidate layer, on the validation split: the behaviour score with the direction ablated (on the
    prompts that show the behaviour), with it added (on the prompts that do not), and the KL that the
    ablation causes on those; the chosen layer and why."""

    layers: list[int]
    ablate_score: list[float]
    add_score: list[float | None]  # None where not scored
    ablate_kl: list[float]
    best: int
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def select_layer(
    layers: Sequence[int],
    ablate_score: Sequence[float],
    add_score: Sequence[float | None],
    ablate_kl: Sequence[float],
    max_after: float = 0.01,
    max_kl: float = 0.1,
    min_add_score: float = float(np.log(0.5)),
) -> tuple[int, str]:
    """The layer rule on validation scores (log P(prefix) with the direction removed / added; KL of the
    removal on the other set), and the rule's wording.

    First the layers whose removal is *effective* (P(prefix) ≤ ``max_after`` on the behaviour's prompts; 1%
    by default, because greedy decoding still picks a prefix that keeps a tenth of the mass when the rest is
    spread thin);
    among them, preferably those whose addition makes the prefix at least ``exp(min_add_score)`` likely
    (when scored), the one with the least KL: the gentlest edit that still removes the behaviour. With no
    effective layer, Arditi et al.'s rule: the strongest removal among layers with KL ≤ ``max_kl`` (their
    filter; on a 135M model every effective layer exceeds it), else the strongest removal."""
    idx = range(len(layers))
    target = float(np.log(max_after))
    effective = [i for i in idx if ablate_score[i] <= target]
    if effective:
        scored = any(a is not None for a in add_score)
        inducing = [i for i in effective if (a := add_score[i]) is not None and a >= min_add_score]
        pool = inducing or effective
        rule = f"least KL among layers whose removal leaves P(prefix) <= {max_after:g}"
        if scored:
            rule += (
                f" and whose addition makes it >= {np.exp(min_add_score):.2g}"
                if inducing
                else " (none of them met the addition filter)"
            )
        return layers[min(pool, key=lambda i: ablate_kl[i])], rule
    ok_kl = [i for i in idx if ablate_kl[i] <= max_kl]
    if ok_kl:
        rule = f"no effective layer: strongest removal with KL <= {max_kl}"
        return layers[min(ok_kl, key=lambda i: ablate_score[i])], rule
    return layers[
        min(idx, key=lambda i: ablate_score[i])
    ], "no effective layer, none with small KL: strongest removal"


def choose_layer(
    model: HookedModel,
    directions: torch.Tensor,
    positive_val: Sequence[str],
    negative_val: Sequence[str],
    prefix: Sequence[int],
    max_layer_frac: float = 0.8,
    max_kl: float = 0.1,
    min_add_score: float = float(np.log(0.5)),
    batch_size: int = 16,
    remove: Callable[[HookedModel, int, torch.Tensor], Any] | None = None,
    score_add: bool = True,
    max_after: float = 0.01,
) -> LayerChoice:
    """Score every layer below ``max_layer_frac`` of the depth on the validation split — log P(``prefix``)
    on ``positive_val`` with the layer's direction removed, on ``negative_val`` with it added, and the
    next-token KL the removal causes on ``negative_val`` — and pick one with :func:`select_layer`.

    ``remove(model, layer, direction)`` replaces the directional ablation as the edit being scored (e.g.
    subtracting the vector at its layer, for a steering baseline); ``score_add=False`` skips the addition
    score where only removal matters."""
    if not positive_val or not negative_val:
        raise EmptyPromptSetError("Choosing a layer needs validation prompts in both sets.")
    n = model.cfg.n_layers
    layers = list(range(max(1, int(np.ceil(n * max_layer_frac)))))
    abl: list[float] = []
    add: list[float | None] = []
    kls: list[float] = []
    base = next_token_logprobs(model, negative_val, None, batch_size)
    for l in layers:
        ab = remove(model, l, directions[l]) if remove else directional_ablation(model, directions[l])
        abl.append(float(prefix_logprob(model, positive_val, prefix, ab, batch_size).mean()))
        added = add_direction(l, directions[l])
        add.append(
            float(prefix_logprob(model, negative_val, prefix, added, batch_size).mean())
            if score_add
            else None
        )
        kls.append(float(kl_rows(base, next_token_logprobs(model, negative_val, ab, batch_size)).mean()))
    best, rule = select_layer(layers, abl, add, kls, max_after, max_kl, min_add_score)
    return LayerChoice(layers, abl, add, kls, best, rule)
