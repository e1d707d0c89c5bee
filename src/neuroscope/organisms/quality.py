"""Does an edit keep the model's language ability? Perplexity on held-out corpus text (the prepared corpus's
``heldout`` split: Python documentation pages never trained on), with the edit against the organism itself.

Contexts are packed exactly as the SAE recorder packs them (:func:`neuroscope.record.datasets.iter_contexts`:
BOS + ``ctx_len − 1`` tokens, documents separated by EOS), so the same text is scored for every model with the
same tokenizer. The comparison is paired per context: its interval is a bootstrap over contexts of the ratio
of mean per-token losses, turned into perplexity.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.organisms.generation import edit_context

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

DEFAULT_CORPUS = "data/corpus"
PERPLEXITY_GOAL = 0.02  # the edited model's held-out perplexity within 2% of the organism's


@dataclass(frozen=True)
class PerplexityConfig:
    corpus: str = DEFAULT_CORPUS
    """A prepared corpus folder (its ``split`` file is read) or a text/JSONL file."""
    split: str = "heldout"
    ctx_len: int = 128
    n_contexts: int = 64
    batch_size: int = 8
    goal: float = PERPLEXITY_GOAL
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ctx_len < 2 or self.n_contexts < 1 or self.batch_size < 1:
            raise InvalidConfigError("ctx_len must be >= 2, n_contexts and batch_size >= 1")
        if self.goal <= 0:
            raise InvalidConfigError(f"goal must be positive, got {self.goal}")


def corpus_contexts(tokenizer: Any, cfg: PerplexityConfig | None = None) -> torch.Tensor:
    """``[n_contexts, ctx_len]`` token ids of held-out corpus text (the first ``n_contexts`` contexts)."""
    from neuroscope.record.datasets import iter_contexts, load_documents, resolve_data

    cfg = cfg or PerplexityConfig()
    path = resolve_data(cfg.corpus, cfg.split)
    rows = list(iter_contexts(load_documents(path), tokenizer, cfg.ctx_len, cfg.n_contexts, source=str(path)))
    return torch.stack(rows)


@torch.no_grad()
def context_losses(
    model: HookedModel, contexts: torch.Tensor, edit: Any = None, batch_size: int = 8
) -> np.ndarray:
    """``[n]`` mean next-token cross-entropy (nats) of each context, under ``edit``."""
    out = []
    with edit_context(model, edit):
        for i in range(0, contexts.shape[0], batch_size):
            b = contexts[i : i + batch_size].to(model.device)
            logits = model(b).float()
            lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, b[:, 1:, None])[..., 0]
            out.append((-lp).mean(-1).cpu())
    return torch.cat(out).double().numpy()


@dataclass
class Perplexity:
    model: str
    nll: float  # mean per-token loss over every scored token, nats
    perplexity: float
    n_contexts: int
    n_tokens: int
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def perplexity(
    model: HookedModel,
    contexts: torch.Tensor | None = None,
    edit: Any = None,
    cfg: PerplexityConfig | None = None,
) -> Perplexity:
    """Held-out perplexity of ``model`` under ``edit`` (contexts: default :func:`corpus_contexts`)."""
    cfg = cfg or PerplexityConfig()
    ctx = corpus_contexts(model.tokenizer, cfg) if contexts is None else contexts
    losses = context_losses(model, ctx, edit, cfg.batch_size)
    nll = float(losses.mean())  # equal-length contexts: the mean of means is the per-token mean
    return Perplexity(
        model.cfg.name,
        nll,
        math.exp(nll),
        int(ctx.shape[0]),
        int(ctx.shape[0] * (ctx.shape[1] - 1)),
        asdict(cfg),
    )


@dataclass
class PerplexityComparison:
    """The edited model's held-out perplexity against the reference's (the organism), on the same contexts."""

    reference: Perplexity
    edited: Perplexity
    ratio: float  # edited / reference perplexity
    ratio_ci: tuple[float, float]  # paired bootstrap over contexts
    goal: float

    @property
    def relative_change(self) -> float:
        return self.ratio - 1.0

    @property
    def meets_goal(self) -> bool:
        return abs(self.relative_change) <= self.goal

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference.to_dict(),
            "edited": self.edited.to_dict(),
            "ratio": self.ratio,
            "ratio_ci": list(self.ratio_ci),
            "relative_change": self.relative_change,
            "goal": f"|perplexity ratio - 1| <= {self.goal}",
            "meets_goal": self.meets_goal,
        }


def compare_perplexity(
    model: HookedModel,
    edit: Any,
    cfg: PerplexityConfig | None = None,
    reference: HookedModel | None = None,
    reference_edit: Any = None,
    contexts: torch.Tensor | None = None,
) -> PerplexityComparison:
    """Perplexity of ``model`` under ``edit`` against ``reference`` (default: ``model`` itself) under
    ``reference_edit`` (default none), on the same held-out contexts."""
    cfg = cfg or PerplexityConfig()
    reference = reference or model
    ctx = corpus_contexts(model.tokenizer, cfg) if contexts is None else contexts
    ref = context_losses(reference, ctx, reference_edit, cfg.batch_size)
    new = context_losses(model, ctx, edit, cfg.batch_size)
    rng = np.random.default_rng(cfg.seed)
    idx = rng.integers(0, len(ref), (2000, len(ref)))
    boot = np.exp(new[idx].mean(1) - ref[idx].mean(1))
    n_tok = int(ctx.shape[0] * (ctx.shape[1] - 1))

    def _p(m: HookedModel, losses: np.ndarray) -> Perplexity:
        nll = float(losses.mean())
        return Perplexity(m.cfg.name, nll, math.exp(nll), int(ctx.shape[0]), n_tok, asdict(cfg))

    return PerplexityComparison(
        _p(reference, ref),
        _p(model, new),
        float(math.exp(new.mean() - ref.mean())),
        (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))),
        cfg.goal,
    )


def adapter_edit(model: HookedModel, folder: str | os.PathLike, name: str | None = None) -> Any:
    """A PEFT LoRA folder (an exported edit) attached to ``model``, as an edit for every function here and in
    :mod:`neuroscope.organisms.evaluate` (a context factory: forwards inside it run with the adapter)."""
    from neuroscope.edits.edit import load_edit
    from neuroscope.organisms.sae_steps import attach

    return attach(model, name or f"adapter:{Path(folder).name}", load_edit(folder))


def as_edit(model: HookedModel, edit: Any) -> Any:
    """``edit`` as :func:`edit_context` takes it: a path (str or PathLike) is read as an adapter folder."""
    if isinstance(edit, (str, os.PathLike)):
        return adapter_edit(model, edit)
    return edit
