"""What the three methods share: a step proposes candidates, the scorer scores them, the method observes.

Every proposed candidate is new (never scored before, no duplicate within the step) and (with the re-tokenisation filter) renders to a prompt that tokenises to exactly its ids, so each
forward row is spent on a suffix a user could actually send.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .config import AttackConfig
from .problem import AttackProblem
from .scorer import TargetScorer

Key = tuple[int, ...]


class Buffer:
    """The ``size`` lowest-loss distinct suffixes seen so far, best first."""

    def __init__(self, size: int):
        self.size = size
        self.items: list[tuple[float, Key]] = []

    def add(self, loss: float, ids: Key) -> None:
        if any(k == ids for _, k in self.items):
            return
        if len(self.items) < self.size or loss < self.items[-1][0]:
            self.items.append((loss, ids))
            self.items.sort(key=lambda x: x[0])
            del self.items[self.size :]

    @property
    def best(self) -> tuple[float, Key]:
        return self.items[0]


class SearchMethod:
    """Base: ``propose(step)`` -> ``[N, S]`` new candidates; ``observe(candidates, losses)``."""

    def __init__(
        self,
        problem: AttackProblem,
        scorer: TargetScorer,
        config: AttackConfig,
        generator: torch.Generator,
        buffer_size: int = 1,
    ):
        self.problem, self.scorer, self.config, self.gen = problem, scorer, config, generator
        self.allowed_ids = torch.nonzero(problem.allowed).flatten()
        self.seen: dict[Key, float] = {}
        self.buffer = Buffer(buffer_size)

    @property
    def best(self) -> tuple[float, torch.Tensor]:
        loss, ids = self.buffer.best
        return loss, torch.tensor(ids, dtype=torch.long)

    def propose(self, step: int) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, candidates: torch.Tensor, losses: torch.Tensor) -> None:
        for row, loss in zip(candidates.tolist(), losses.tolist(), strict=True):
            key = tuple(row)
            self.seen[key] = loss
            self.buffer.add(loss, key)

    # --- helpers ---------------------------------------------------------------------------------------
    def random_tokens(self, *shape: int) -> torch.Tensor:
        idx = torch.randint(0, len(self.allowed_ids), shape, generator=self.gen)
        return self.allowed_ids[idx]

    def fill(
        self,
        sample: Callable[[int], torch.Tensor],
        width: int,
        rounds: int = 6,
        exclude: set[Key] | None = None,
    ) -> torch.Tensor:
        """Up to ``width`` usable new candidates from ``sample(n)``, drawing again for those filtered out."""
        keep: list[torch.Tensor] = []
        keys: set[Key] = set(exclude or ())
        for _ in range(rounds):
            need = width - len(keep)
            if need <= 0:
                break
            cands = sample(max(2 * need, 8))
            rows = [(c, tuple(c.tolist())) for c in cands]
            rows = [(c, k) for c, k in rows if k not in self.seen and k not in keys]
            if not rows:
                continue
            block = torch.stack([c for c, _ in rows])
            # (methods draw only allowed tokens, so no token check here: a user's init suffix may hold others)
            ok = (
                self.problem.retokenizes(block)
                if self.config.retokenize_filter
                else torch.ones(len(rows), dtype=torch.bool)
            )
            for (c, k), good in zip(rows, ok.tolist(), strict=True):
                if good and k not in keys and len(keep) < width:  # (keys grows inside this loop)
                    keep.append(c)
                    keys.add(k)
        if not keep:
            return torch.empty(0, self.problem.init_ids.shape[0], dtype=torch.long)
        return torch.stack(keep)
