"""Greedy coordinate gradient (Zou et al. 2023) with the speed-ups the literature reports.

Each step: the token gradient of the target loss at the best suffix so far ranks substitutions per position;
``width`` candidates each replace ``n_replace`` positions with a token drawn from that position's top-k; one
batched forward scores them. Beyond the reference loop: several positions replaced per candidate early on,
falling to one (ACG, Liu et al. 2024: big moves while far, single swaps near the optimum); a buffer of the best
distinct suffixes, so a bad step never loses the best (the step starts from the buffer's best); multi-coordinate
merging (I-GCG, Jia et al. 2024): the substitutions that lowered the loss in the last step are stacked onto the
new best, one more each time, as ``combine`` extra candidates of the next step (each evaluated substitution is
a finite-difference measurement the reference loop throws away); the gradient is reused while the best does
not change; candidates are scored once ever (a history of every suffix tried).
"""

from __future__ import annotations

import torch

from .config import AttackConfig
from .problem import AttackProblem
from .scorer import TargetScorer
from .search import Key, SearchMethod


class GCG(SearchMethod):
    def __init__(
        self, problem: AttackProblem, scorer: TargetScorer, config: AttackConfig, generator: torch.Generator
    ):
        super().__init__(problem, scorer, config, generator, buffer_size=config.buffer_size)
        self._grad_key: Key | None = None
        self._topk = torch.empty(0)
        self._last: tuple[torch.Tensor, float, torch.Tensor, torch.Tensor] | None = None

    def n_replace(self, step: int) -> int:
        """Positions replaced per candidate at ``step`` (0-based): ``n_replace`` falling linearly to 1."""
        c = self.config
        if c.n_replace_steps <= 0:
            return 1
        frac = max(0.0, 1.0 - step / c.n_replace_steps)
        return max(1, min(self.problem.init_ids.shape[0], round(1 + (c.n_replace - 1) * frac)))

    def top_substitutions(self, suffix: torch.Tensor) -> torch.Tensor:
        """``[S, k]`` most promising tokens per position by the (negative) token gradient."""
        key = tuple(suffix.tolist())
        if key != self._grad_key:
            grad = self.scorer.gradient(suffix)
            grad[:, ~self.problem.allowed] = float("inf")
            grad[torch.arange(len(suffix)), suffix] = float("inf")  # a substitution must change the token
            k = min(self.config.topk, int(self.problem.allowed.sum()))
            self._topk = (-grad).topk(k, dim=1).indices
            self._grad_key = key
        return self._topk

    def propose(self, step: int) -> torch.Tensor:
        _, base = self.best
        top = self.top_substitutions(base)
        s, k = top.shape
        n_rep = self.n_replace(step)

        def sample(n: int) -> torch.Tensor:
            pos = torch.rand(n, s, generator=self.gen).argsort(-1)[:, :n_rep]
            vals = top[pos, torch.randint(0, k, (n, n_rep), generator=self.gen)]
            return base.repeat(n, 1).scatter_(1, pos, vals)

        merged = self.merged(base)
        width = self.config.width - len(merged)
        sampled = self.fill(sample, width, exclude={tuple(r.tolist()) for r in merged})
        return torch.cat([merged, sampled]) if len(merged) else sampled

    def observe(self, candidates: torch.Tensor, losses: torch.Tensor) -> None:
        before = self.best if self.buffer.items else None  # none yet when the initial suffix is observed
        super().observe(candidates, losses)
        if before is not None:
            self._last = (before[1], before[0], candidates, losses)

    def merged(self, base: torch.Tensor) -> torch.Tensor:
        """Up to ``combine`` candidates: ``base`` plus the last step's improving substitutions, stacked one at
        a time in order of the improvement each gave (skipping positions already taken)."""
        if self._last is None or self.config.combine < 1:
            return torch.empty(0, len(base), dtype=torch.long)
        old, old_loss, cands, losses = self._last
        order = losses.argsort()
        rows: list[torch.Tensor] = []
        row, taken = base.clone(), set(torch.nonzero(base != old).flatten().tolist())
        for i in order.tolist():
            if float(losses[i]) >= old_loss or len(rows) >= self.config.combine:
                break
            pos = torch.nonzero(cands[i] != old).flatten().tolist()
            if not pos or taken.intersection(pos):
                continue
            row = row.clone()
            row[pos] = cands[i][pos]
            taken.update(pos)
            rows.append(row)
        if not rows:
            return torch.empty(0, len(base), dtype=torch.long)
        rows = [r for r in rows if tuple(r.tolist()) not in self.seen]
        block = torch.stack(rows) if rows else torch.empty(0, len(base), dtype=torch.long)
        if len(block) and self.config.retokenize_filter:
            block = block[self.problem.retokenizes(block)]
        return block
