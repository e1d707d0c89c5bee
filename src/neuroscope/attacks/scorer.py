"""Target loss of candidate suffixes, and its gradient with respect to the suffix's one-hot tokens.

Three things keep a step cheap: the keys and values of the fixed text before the suffix are computed once and
shared by every candidate (a ``DynamicCache`` built from them per forward, the documented way to start from
given keys/values in transformers 5); the last target token is never fed (nothing reads its logits); and only
the ``T`` positions that predict the target are unembedded (``logits_to_keep``), not every position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from neuroscope.errors import GradientsUnavailableError, InputGradientsUnavailableError

from .config import AttackConfig
from .problem import AttackProblem


@dataclass(frozen=True)
class Scores:
    losses: torch.Tensor  # [B] float32, the configured loss
    matches: torch.Tensor  # [B] bool: teacher-forced argmax equals the target at every position

    @staticmethod
    def cat(parts: list[Scores]) -> Scores:
        if not parts:
            return Scores(torch.empty(0), torch.empty(0, dtype=torch.bool))
        return Scores(torch.cat([p.losses for p in parts]), torch.cat([p.matches for p in parts]))


class TargetScorer:
    def __init__(self, model: Any, problem: AttackProblem, config: AttackConfig):
        self.model, self.hf = model, model.hf_model
        self.problem = problem
        self.kind, self.alpha = config.loss, config.mellowmax_alpha
        device = model.device
        # clones made outside inference mode: the gradient pass saves the target ids for backward, and a
        # server builds this inside its worker's inference mode
        with torch.inference_mode(False):
            self.target = problem.target_ids.to(device).clone()
            self.before = problem.before_ids.to(device).clone()
            # the scored tail: what follows the suffix, minus the last target token (its logits are never read)
            self.tail = torch.cat([problem.after_ids, problem.target_ids[:-1]]).to(device).clone()
        self.rows = 0  # candidate rows scored
        self.gradients = 0  # forward+backward passes
        self._prefix = self._prefix_kv() if config.prefix_cache else None

    # --- the fixed prefix ------------------------------------------------------------------------------
    def _prefix_kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # outside inference mode: these keys/values are read by the gradient pass, which autograd records
        with torch.inference_mode(False), torch.no_grad():
            out = self.hf(input_ids=self.before[None], use_cache=True)
        cache = getattr(out, self.model._cache_kwarg)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _cache(self, batch: int) -> dict[str, Any]:
        if self._prefix is None:
            return {}
        from transformers import DynamicCache

        data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self._prefix]
        cache = DynamicCache(ddp_cache_data=data, config=self.hf.config)
        return {self.model._cache_kwarg: cache, "use_cache": True}

    def _ids(self, suffixes: torch.Tensor) -> torch.Tensor:
        b = suffixes.shape[0]
        parts = [suffixes.to(self.tail.device), self.tail.expand(b, -1)]
        if self._prefix is None:
            parts.insert(0, self.before.expand(b, -1))
        return torch.cat(parts, 1)

    # --- losses ----------------------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, V]`` logits at the target-predicting positions -> (loss ``[B]``, exact match ``[B]``)."""
        logits = logits.float()
        target = self.target.expand(logits.shape[0], -1)
        nll = -torch.log_softmax(logits, -1).gather(-1, target[..., None]).squeeze(-1)
        if self.kind == "mellowmax":
            # a soft maximum of the per-token losses: the worst token dominates, which is what an exact
            # greedy match needs (alpha -> 0 gives the mean, alpha -> inf the max)
            a = self.alpha
            loss = (torch.logsumexp(a * nll, -1) - math.log(nll.shape[-1])) / a
        else:
            loss = nll.mean(-1)
        return loss, (logits.argmax(-1) == target).all(-1)

    @torch.no_grad()
    def scores(self, suffixes: torch.Tensor) -> Scores:
        """Loss of each ``[B, S]`` candidate suffix, in one forward pass."""
        ids = self._ids(suffixes)
        with torch.inference_mode(False):
            out = self.hf(input_ids=ids, logits_to_keep=len(self.target), **self._cache(ids.shape[0]))
        loss, match = self._loss(out.logits)
        self.rows += ids.shape[0]
        return Scores(loss.cpu(), match.cpu())

    def gradient(self, suffix: torch.Tensor) -> torch.Tensor:
        """``[S, d_vocab]``: d loss / d one-hot of each suffix token, up to a positive factor per model.

        The gradient is taken at the embedding module's output (so models that scale embeddings inside that
        module or after it behave as with token ids) and mapped to token space through ``W_E``; a positive
        scale does not change the per-position ranking the search reads."""
        start = 0 if self._prefix is not None else len(self.before)
        n = suffix.shape[0]
        try:
            embed = self.hf.get_input_embeddings()
            with torch.inference_mode(False), torch.enable_grad():
                e = embed(self._ids(suffix[None])).detach()
                leaf = e[:, start : start + n].clone().requires_grad_(True)
                full = torch.cat([e[:, :start], leaf, e[:, start + n :]], 1)
                out = self.hf(inputs_embeds=full, logits_to_keep=len(self.target), **self._cache(1))
                loss = self._loss(out.logits)[0][0]
                if not loss.requires_grad:
                    raise InputGradientsUnavailableError(
                        "its output does not depend differentiably on the input"
                    )
                (grad,) = torch.autograd.grad(loss, leaf)
        except (RuntimeError, NotImplementedError, AttributeError) as e:
            if isinstance(e, GradientsUnavailableError):
                raise
            raise InputGradientsUnavailableError(f"{type(e).__name__}: {e}") from e
        self.gradients += 1
        return (grad[0] @ self.model.W_E.detach().T).float().cpu()
