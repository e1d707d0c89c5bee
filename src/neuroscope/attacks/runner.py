"""One interface for every method: ``Attack`` steps a search; ``run_attack`` runs it to the end.

A step is three phases, so a server can run each as its own short job between live requests:
``propose()`` (the method's candidates; gcg's gradient pass), ``score(candidates)`` (forward passes, in chunks
of any size) and ``observe(candidates, scores)`` (the method's update, then verification). Success is decided
by :func:`~neuroscope.attacks.verify.verify` alone: a candidate whose teacher-forced argmax matches the target
is rendered, re-tokenised and decoded greedily; only if the output starts with the target is it a success, and
the verified suffix is the one kept and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .config import AttackConfig
from .gcg import GCG
from .genetic import Genetic
from .gradient_free import GradientFree
from .problem import AttackProblem
from .result import AttackResult, StepRecord
from .scorer import Scores, TargetScorer
from .search import SearchMethod
from .verify import Verification, check_budget, verify

METHOD_CLASSES: dict[str, type[SearchMethod]] = {
    "gcg": GCG,
    "genetic": Genetic,
    "gradient-free": GradientFree,
}
MAX_VERIFY_PER_STEP = 3  # teacher-forced matches decoded per step (lowest loss first)


@dataclass
class _Kept:
    loss: float
    ids: torch.Tensor
    verification: Verification
    step: int


class Attack:
    """A search in progress on ``model`` (a HookedModel): ``prompt`` + suffix should make it say ``target``."""

    def __init__(self, model: Any, prompt: str, target: str, config: AttackConfig | None = None):
        self.t0 = time.perf_counter()
        self.config = config = config or AttackConfig()
        self.model = model
        self.problem = AttackProblem(model, prompt, target, config)
        self.scorer = TargetScorer(model, self.problem, config)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.method = METHOD_CLASSES[config.method](self.problem, self.scorer, config, self.gen)
        init = self.problem.init_ids[None]
        self.init_loss = float(self.scorer.scores(init).losses[0])
        self.method.observe(init, torch.tensor([self.init_loss]))
        if config.method == "gcg":  # fail now, with the named error, not after the first step's setup
            self.method.top_substitutions(self.problem.init_ids)  # type: ignore[attr-defined]
        self.history: list[StepRecord] = []
        self.kept: _Kept | None = None
        self.rows_to_success: int | None = None
        self.stopped = False

    # --- state ---------------------------------------------------------------------------------------
    @property
    def step_index(self) -> int:
        return len(self.history)

    @property
    def success(self) -> bool:
        return self.kept is not None

    @property
    def done(self) -> bool:
        return (
            self.stopped or self.step_index >= self.config.steps or (self.success and self.config.early_stop)
        )

    def stop(self) -> None:
        self.stopped = True

    # --- one step in three phases ----------------------------------------------------------------------
    def propose(self) -> torch.Tensor:
        return self.method.propose(self.step_index)

    def score(self, candidates: torch.Tensor) -> Scores:
        """Scores of ``candidates`` in forwards of at most ``config.batch_size`` rows (an empty batch: none)."""
        b = self.config.batch_size
        return Scores.cat([self.scorer.scores(candidates[i : i + b]) for i in range(0, len(candidates), b)])

    def observe(self, candidates: torch.Tensor, scores: Scores) -> StepRecord:
        step = self.step_index + 1
        if len(candidates):
            self.method.observe(candidates, scores.losses)
        verified = self._verify_matches(candidates, scores, step)
        best_loss, best_ids = self.method.best
        record = StepRecord(
            step=step,
            loss=float(scores.losses.min()) if len(candidates) else best_loss,
            best_loss=best_loss,
            best_suffix=self.problem.decode(best_ids),
            candidates=len(candidates),
            matched=int(scores.matches.sum()) if len(candidates) else 0,
            verified=verified,
            seconds=time.perf_counter() - self.t0,
        )
        self.history.append(record)
        return record

    def step(self) -> StepRecord:
        candidates = self.propose()
        return self.observe(candidates, self.score(candidates))

    def _verify_matches(self, candidates: torch.Tensor, scores: Scores, step: int) -> bool:
        """Decode the step's teacher-forced matches (lowest loss first); keep the first that verifies."""
        if not len(candidates) or not bool(scores.matches.any()):
            return False
        idx = torch.nonzero(scores.matches).flatten()
        idx = idx[scores.losses[idx].argsort()][:MAX_VERIFY_PER_STEP]
        budget = check_budget(self.problem, self.config.max_new_tokens)
        for i in idx.tolist():
            loss = float(scores.losses[i])
            if self.kept is not None and loss >= self.kept.loss:
                return False  # already holding a verified suffix at least this good
            v = verify(self.model, self.problem, candidates[i], budget)
            if v.success:
                if self.kept is None:
                    self.rows_to_success = self.scorer.rows
                self.kept = _Kept(loss, candidates[i].clone(), v, self.kept.step if self.kept else step)
                return True
        return False

    # --- the outcome -----------------------------------------------------------------------------------
    def result(self) -> AttackResult:
        """The run so far: the verified suffix if there is one (else the lowest-loss one) and its output."""
        if self.kept is not None:
            loss, ids, step = self.kept.loss, self.kept.ids, self.kept.step
        else:
            (loss, ids), step = self.method.best, None
        final = verify(self.model, self.problem, ids, self.config.max_new_tokens)
        seconds = time.perf_counter() - self.t0
        to_success = self.history[step - 1].seconds if step else None
        return AttackResult(
            config=self.config.to_dict(),
            model=self.model.cfg.name,
            prompt=self.problem.prompt,
            target=self.problem.target,
            chat=self.problem.chat,
            rendered_prompt=final.prompt,
            prompt_with_suffix=self.problem.prompt_with_suffix(final.suffix),
            best_suffix=final.suffix,
            best_suffix_ids=[int(i) for i in ids],
            best_loss=loss,
            init_loss=self.init_loss,
            verified_output=final.output,
            # a verified success stays one; the final, longer decode must agree (it extends the same greedy path)
            success=self.kept is not None and final.success,
            success_step=step,
            history=list(self.history),
            seconds=seconds,
            seconds_to_success=to_success,
            forward_rows=self.scorer.rows,
            gradient_passes=self.scorer.gradients,
            rows_to_success=self.rows_to_success,
        )


def run_attack(
    model: Any,
    prompt: str,
    target: str,
    config: AttackConfig | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
) -> AttackResult:
    """Search until a verified success (with ``early_stop``) or ``config.steps`` steps; seeded, deterministic."""
    attack = Attack(model, prompt, target, config)
    while not attack.done:
        record = attack.step()
        if on_step is not None:
            on_step(record)
    return attack.result()
