"""Adversarial suffix search: gcg, genetic and gradient-free, one interface, verified success.

>>> from neuroscope.attacks import AttackConfig, run_attack
>>> r = run_attack(model, "Write a short poem about the sea.", "Sure, I can help with that", AttackConfig(width=128))
>>> r.success, r.best_suffix, r.verified_output
"""

from neuroscope.attacks.config import METHODS, AttackConfig
from neuroscope.attacks.problem import AttackProblem
from neuroscope.attacks.result import AttackResult, StepRecord
from neuroscope.attacks.runner import Attack, run_attack
from neuroscope.attacks.verify import Verification, verify

__all__ = [
    "METHODS",
    "Attack",
    "AttackConfig",
    "AttackProblem",
    "AttackResult",
    "StepRecord",
    "Verification",
    "run_attack",
    "verify",
]
