"""Which SAE features separate two prompt sets: the feature analogue of the contrastive head experiment.

Each prompt is summarised by each feature's maximum activation over its tokens (the first token, the
attention sink SAEs are not trained on, left out). Features are ranked on a training split by how far their
AUROC is from 0.5; the reported AUROC, mean difference and bootstrap interval are measured on the held-out
split, so a feature picked by chance among thousands does not look better than it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import EmptyPromptError, InvalidConfigError, ResourceNotFoundError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

FIRST_POS = 1  # see neuroscope.edits.reference.FIRST_EDITABLE_POS


@dataclass(frozen=True)
class ContrastConfig:
    heldout_fraction: float = 0.3
    n_boot: int = 1000
    top: int = 20
    confidence: float = 0.95
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0 < self.heldout_fraction < 1:
            raise InvalidConfigError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if self.n_boot < 10 or self.top < 1:
            raise InvalidConfigError("n_boot >= 10 and top >= 1 are required")


@dataclass(frozen=True)
class FeatureContrast:
    feature: int
    auroc_train: float
    auroc: float  # held-out
    ci_low: float
    ci_high: float
    mean_diff: float  # held-out mean(max act | positive) - mean(max act | negative)
    mean_diff_train: float
    mean_positive: float
    mean_negative: float
    effect: float | None = None  # estimated drop of the behaviour metric when the feature is ablated
    effect_measured: float | None = None  # the drop measured by ablating it (validation split), when done


@dataclass
class ContrastResult:
    hook: str
    n_positive: int
    n_negative: int
    n_train: dict[str, int]
    n_heldout: dict[str, int]
    config: dict[str, Any]
    features: list[FeatureContrast] = field(default_factory=list)
    rank: str = "auroc"

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "features"},
            "features": [asdict(f) for f in self.features],
        }

    def figure(self) -> Any:
        import plotly.graph_objects as go

        f = self.features
        fig = go.Figure(
            go.Bar(
                x=[str(x.feature) for x in f],
                y=[x.auroc for x in f],
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[x.ci_high - x.auroc for x in f],
                    arrayminus=[x.auroc - x.ci_low for x in f],
                ),
            )
        )
        fig.add_hline(y=0.5, line_dash="dot")
        fig.update_layout(
            title=f"Features separating the prompt sets at {self.hook} (held-out AUROC, {int(self.config['confidence'] * 100)}% bootstrap CI)",
            xaxis_title="feature",
            yaxis_title="AUROC (positive vs negative)",
            yaxis_range=[0, 1],
        )
        return fig


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per line (``.txt``), a JSON list of strings, or JSONL with a ``text`` field."""
    p = Path(path)
    if not p.is_file():
        raise ResourceNotFoundError(f"Prompt file {p} does not exist.")
    raw = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        data = json.loads(raw)
        prompts = [str(x) for x in data] if isinstance(data, list) else []
    elif p.suffix == ".jsonl":
        prompts = [str(json.loads(line)["text"]) for line in raw.splitlines() if line.strip()]
    else:
        prompts = [line.strip() for line in raw.splitlines() if line.strip()]
    if not prompts:
        raise EmptyPromptError(f"{p} holds no prompts (one per line, a JSON list, or JSONL with 'text').")
    return prompts


@torch.no_grad()
def max_activations(
    model: HookedModel, sae: SAE, prompts: Sequence[str], hook: str | None = None, batch_size: int = 16
) -> torch.Tensor:
    """``[n_prompts, d_sae]``: each feature's maximum activation over each prompt's tokens (first left out)."""
    name = model.resolve_hook_name(hook or sae.cfg.hook_name)
    layer = int(name.split(".")[1])
    out = []
    for i in range(0, len(prompts), batch_size):
        tok = model.tokenize(list(prompts[i : i + batch_size]))
        _, cache = model.run_with_cache(
            tok.ids, names=[name], stop_at_layer=layer + 1, attention_mask=tok.attention_mask
        )
        z = sae.encode(cache[name].float())  # [b, p, d_sae]
        valid = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        if tok.attention_mask is not None:
            valid &= tok.attention_mask.bool()
        valid[:, :FIRST_POS] = False
        if z.shape[1] <= FIRST_POS:
            valid[:, :] = True  # a one-token prompt: its only token is all there is
        z = torch.where(valid[..., None], z, torch.zeros_like(z))
        out.append(z.amax(1).cpu())
    return torch.cat(out)


def auroc(pos: torch.Tensor, neg: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Per column: P(pos > neg) + ½ P(pos = neg) over all pairs (the Mann–Whitney AUROC, ties counted half)."""
    res = []
    for j in range(0, pos.shape[1], chunk):
        p, n = pos[:, None, j : j + chunk], neg[None, :, j : j + chunk]
        res.append(((p > n).float() + 0.5 * (p == n).float()).mean((0, 1)))
    return torch.cat(res)


def contrast_features(
    model: HookedModel,
    sae: SAE,
    positive: Sequence[str],
    negative: Sequence[str],
    cfg: ContrastConfig | None = None,
    hook: str | None = None,
    effect: Sequence[float] | torch.Tensor | None = None,
    measured: dict[int, float] | None = None,
    rank: str = "auroc",
) -> ContrastResult:
    """Features separating ``positive`` from ``negative`` (ranked by training AUROC), or, with
    ``rank="effect"``, the features with the largest causal ``effect`` (one value per feature, e.g.
    :func:`neuroscope.analysis.effects.rank_effects`' ``feature_scores``), their AUROC shown beside it."""
    cfg = cfg or ContrastConfig()
    if rank not in ("auroc", "effect"):
        raise InvalidConfigError(f"rank must be 'auroc' or 'effect', got {rank!r}")
    if rank == "effect" and effect is None:
        raise InvalidConfigError("rank='effect' needs the features' effects")
    if len(positive) < 4 or len(negative) < 4:
        raise InvalidConfigError(
            f"need at least 4 prompts per set for a train/held-out split, got {len(positive)} and {len(negative)}"
        )
    name = model.resolve_hook_name(hook or sae.cfg.hook_name)
    acts = {
        "positive": max_activations(model, sae, positive, name, cfg.batch_size),
        "negative": max_activations(model, sae, negative, name, cfg.batch_size),
    }
    gen = torch.Generator().manual_seed(cfg.seed)
    train, held = {}, {}
    for k, a in acts.items():
        perm = torch.randperm(a.shape[0], generator=gen)
        n_held = max(2, int(round(a.shape[0] * cfg.heldout_fraction)))
        held[k], train[k] = a[perm[:n_held]], a[perm[n_held:]]
    au_train = auroc(train["positive"], train["negative"])
    diff_train = train["positive"].mean(0) - train["negative"].mean(0)
    # strongest separation first; among equals (e.g. AUROC 1.0) the larger mean difference
    score = (au_train - 0.5).abs() + 1e-6 * diff_train.abs() / (diff_train.abs().max() + 1e-12)
    eff = None if effect is None else torch.as_tensor(effect, dtype=torch.float32)
    if eff is not None and eff.shape != score.shape:
        raise InvalidConfigError(f"effect has {eff.numel()} values for {score.numel()} features")
    top = torch.argsort(eff if rank == "effect" and eff is not None else score, descending=True)[: cfg.top]
    hp, hn = held["positive"][:, top], held["negative"][:, top]
    au_held = auroc(hp, hn)
    boots = []
    for _ in range(cfg.n_boot):
        ip = torch.randint(0, hp.shape[0], (hp.shape[0],), generator=gen)
        ineg = torch.randint(0, hn.shape[0], (hn.shape[0],), generator=gen)
        boots.append(auroc(hp[ip], hn[ineg]))
    b = torch.stack(boots)
    alpha = (1 - cfg.confidence) / 2
    lo, hi = b.quantile(alpha, dim=0), b.quantile(1 - alpha, dim=0)
    features = [
        FeatureContrast(
            feature=int(f),
            auroc_train=round(float(au_train[f]), 4),
            auroc=round(float(au_held[i]), 4),
            ci_low=round(float(lo[i]), 4),
            ci_high=round(float(hi[i]), 4),
            mean_diff=round(float(hp[:, i].mean() - hn[:, i].mean()), 4),
            mean_diff_train=round(float(diff_train[f]), 4),
            mean_positive=round(float(hp[:, i].mean()), 4),
            mean_negative=round(float(hn[:, i].mean()), 4),
            effect=None if eff is None else round(float(eff[f]), 6),
            effect_measured=None if not measured or int(f) not in measured else round(measured[int(f)], 6),
        )
        for i, f in enumerate(top.tolist())
    ]
    return ContrastResult(
        hook=name,
        n_positive=len(positive),
        n_negative=len(negative),
        n_train={k: int(v.shape[0]) for k, v in train.items()},
        n_heldout={k: int(v.shape[0]) for k, v in held.items()},
        config=asdict(cfg),
        features=features,
        rank=rank,
    )
