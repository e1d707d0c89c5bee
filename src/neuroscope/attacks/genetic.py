"""A genetic search: a population of suffixes, fitness = target loss, no gradients.

Each generation keeps the ``elites`` best members unchanged (their losses are known, so they cost nothing) and
breeds the rest: tournament selection, uniform crossover of two parents with probability ``crossover_rate``,
then per-token mutation at ``mutation_rate`` (at least one token per child). A mutated token comes from the
allowed vocabulary, or, half the time, from the tokens the elites already use (good material moves between
positions and members).
"""

from __future__ import annotations

import torch

from .config import AttackConfig
from .problem import AttackProblem
from .scorer import TargetScorer
from .search import SearchMethod


class Genetic(SearchMethod):
    def __init__(
        self, problem: AttackProblem, scorer: TargetScorer, config: AttackConfig, generator: torch.Generator
    ):
        super().__init__(problem, scorer, config, generator, buffer_size=1)
        self.population: list[tuple[float, torch.Tensor]] = []

    def observe(self, candidates: torch.Tensor, losses: torch.Tensor) -> None:
        super().observe(candidates, losses)
        children = list(zip(losses.tolist(), candidates, strict=True))
        elites = sorted(self.population, key=lambda x: x[0])[: self.config.elites]
        merged = elites + children if self.population else children
        self.population = sorted(merged, key=lambda x: x[0])[: self.config.width]

    def _mutate(self, rows: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        n, s = rows.shape
        hit = torch.rand(n, s, generator=self.gen) < self.config.mutation_rate
        hit[torch.arange(n), torch.randint(0, s, (n,), generator=self.gen)] = True
        fresh = self.random_tokens(n, s)
        reuse = pool[torch.randint(0, len(pool), (n, s), generator=self.gen)]
        source = torch.where(torch.rand(n, s, generator=self.gen) < 0.5, fresh, reuse)
        return torch.where(hit, source, rows)

    def _select(self, losses: torch.Tensor, members: torch.Tensor, n: int, size: int = 3) -> torch.Tensor:
        picks = torch.randint(0, len(losses), (n, size), generator=self.gen)
        winner = picks.gather(1, losses[picks].argmin(1, keepdim=True)).squeeze(1)
        return members[winner]

    def propose(self, step: int) -> torch.Tensor:
        # the first generation breeds from the initial suffix alone: mutants of it
        losses = torch.tensor([x[0] for x in self.population])
        members = torch.stack([x[1] for x in self.population])
        pool = members[: max(1, self.config.elites)].flatten()
        n_children = self.config.width - min(self.config.elites, len(self.population))

        def sample(n: int) -> torch.Tensor:
            a = self._select(losses, members, n)
            b = self._select(losses, members, n)
            mix = torch.rand(a.shape, generator=self.gen) < 0.5
            cross = (torch.rand(n, generator=self.gen) < self.config.crossover_rate)[:, None]
            child = torch.where(cross & mix, b, a)
            return self._mutate(child, pool)

        return self.fill(sample, n_children)
