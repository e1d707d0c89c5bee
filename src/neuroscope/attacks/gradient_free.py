"""A gradient-free estimate of which substitutions help, for models that give no gradients.

Where GCG reads ``d loss / d one-hot`` from autograd, this method measures it by finite differences: part of
each step (``explore``) scores single substitutions ``(position, token)`` of the current best suffix, and the
change in loss each causes is kept as its estimated effect. The rest of the step combines substitutions
measured to help (two to four at distinct positions, drawn with probability rising with the measured gain),
the way GCG combines gradient-ranked ones. The best candidate becomes the new base when it lowers the loss;
estimates measured at an older base are kept (most still hold) and refreshed when measured again. Positions
whose substitutions helped are explored more often.
"""

from __future__ import annotations

import torch

from .config import AttackConfig
from .problem import AttackProblem
from .scorer import TargetScorer
from .search import Key, SearchMethod


class GradientFree(SearchMethod):
    def __init__(
        self, problem: AttackProblem, scorer: TargetScorer, config: AttackConfig, generator: torch.Generator
    ):
        super().__init__(problem, scorer, config, generator, buffer_size=1)
        self.effects: dict[tuple[int, int], float] = {}  # (position, token) -> measured change in loss
        self._singles: dict[Key, tuple[int, int]] = {}
        self._base_loss = 0.0

    def _position_weights(self, s: int) -> torch.Tensor:
        gain = torch.zeros(s)
        for (p, _), d in self.effects.items():
            gain[p] = max(float(gain[p]), -d)
        # half uniform (keep exploring everywhere), half proportional to the best gain seen at the position
        w = torch.full((s,), 1.0 / s)
        if gain.sum() > 0:
            w = 0.5 * w + 0.5 * gain / gain.sum()
        return w

    def propose(self, step: int) -> torch.Tensor:
        self._base_loss, base = self.best
        s = base.shape[0]
        self.effects = {k: d for k, d in self.effects.items() if int(base[k[0]]) != k[1]}
        helpful = sorted(((d, k) for k, d in self.effects.items() if d < 0))[: 8 * s]
        n_exploit = 0 if len(helpful) < 2 else round(self.config.width * (1 - self.config.explore))
        weights = self._position_weights(s)

        def singles(n: int) -> torch.Tensor:
            pos = torch.multinomial(weights, n, replacement=True, generator=self.gen)
            return base.repeat(n, 1).scatter_(1, pos[:, None], self.random_tokens(n, 1))

        explore = self.fill(singles, self.config.width - n_exploit)
        self._singles = {}
        for row in explore:
            (p,) = torch.nonzero(row != base).flatten().tolist()
            self._singles[tuple(row.tolist())] = (p, int(row[p]))
        if not n_exploit:
            return explore
        gains = torch.tensor([-d for d, _ in helpful])
        probs = torch.softmax(gains / gains.std().clamp_min(1e-6), 0)
        subs = [k for _, k in helpful]

        def combos(n: int) -> torch.Tensor:
            rows = base.repeat(n, 1)
            for i in range(n):
                m = int(torch.randint(2, 5, (1,), generator=self.gen))
                picks = torch.multinomial(probs, min(m, len(subs)), generator=self.gen).tolist()
                used: set[int] = set()
                for j in picks:
                    p, t = subs[j]
                    if p not in used:
                        rows[i, p] = t
                        used.add(p)
            return rows

        exploit = self.fill(combos, n_exploit)
        return torch.cat([explore, exploit]) if len(exploit) else explore

    def observe(self, candidates: torch.Tensor, losses: torch.Tensor) -> None:
        super().observe(candidates, losses)
        for row, loss in zip(candidates.tolist(), losses.tolist(), strict=True):
            sub = self._singles.get(tuple(row))
            if sub is not None:
                self.effects[sub] = loss - self._base_loss
