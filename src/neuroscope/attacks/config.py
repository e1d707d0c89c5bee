"""One frozen configuration for every search method; fields a method does not use are ignored by it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from neuroscope.errors import InvalidConfigError, SearchWidthError, SuffixLengthError

METHODS = ("gcg", "genetic", "gradient-free")
LOSSES = ("ce", "mellowmax")
MAX_SUFFIX_LEN = 100


@dataclass(frozen=True)
class AttackConfig:
    method: str = "gcg"
    """``gcg`` (token gradients), ``genetic`` (population search) or ``gradient-free`` (finite differences)."""
    steps: int = 500
    """Most search steps (one batch of candidates each); the search stops earlier on a verified success."""
    width: int = 256
    """Candidates evaluated per step (the population for ``genetic``)."""
    suffix_len: int = 20
    """Tokens in the optimised suffix (ignored when ``init_suffix`` is given: its length counts)."""
    init_suffix: str | None = None
    """Starting suffix text; default ``suffix_len`` repeats of `` x``."""
    seed: int = 0
    topk: int = 64
    """gcg: substitutions per position taken from the gradient's top-k."""
    n_replace: int = 3
    """gcg: positions replaced per candidate at step 0; the number falls linearly to 1 by ``n_replace_steps``."""
    n_replace_steps: int = 10
    buffer_size: int = 4
    """gcg: best distinct suffixes kept; each step starts from the best of them."""
    combine: int = 8
    """gcg: extra candidates per step that stack the last step's improving substitutions (0: off)."""
    loss: str = "ce"
    """``ce`` (mean target cross-entropy) or ``mellowmax`` (a soft maximum of the per-token losses)."""
    mellowmax_alpha: float = 1.0
    prefix_cache: bool = True
    """Compute the keys/values of the fixed text before the suffix once, not once per candidate."""
    retokenize_filter: bool = True
    """Evaluate only candidates whose rendered prompt re-tokenises to exactly the scored ids."""
    ascii_only: bool = True
    """Restrict substitutions to printable ASCII tokens (no special tokens)."""
    early_stop: bool = True
    """Stop at the first verified success (a greedy decode that starts with the target)."""
    max_new_tokens: int = 24
    """Generation budget for verification and the reported output; the target must fit in it."""
    chat: bool | None = None
    """Put the suffix in the user turn of the chat template (None: when the tokenizer has a template)."""
    batch_size: int = 64
    """Candidates per forward pass (memory and, in the server, how long one job holds the model)."""
    elites: int = 16
    """genetic: best members carried over unchanged."""
    mutation_rate: float = 0.08
    """genetic: chance that a child's token is replaced (at least one replacement per child)."""
    crossover_rate: float = 0.5
    """genetic: chance that a child mixes two parents (else one parent, mutated)."""
    explore: float = 0.5
    """gradient-free: share of each step spent measuring single substitutions (the rest combines the best)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidConfigError(
                f"Unknown attack method {self.method!r}: choose one of {', '.join(METHODS)}."
            )
        if self.loss not in LOSSES:
            raise InvalidConfigError(f"Unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}.")
        if self.init_suffix is None and not 1 <= self.suffix_len <= MAX_SUFFIX_LEN:
            raise SuffixLengthError(self.suffix_len, MAX_SUFFIX_LEN)
        if self.init_suffix is not None and not self.init_suffix.strip():
            raise SuffixLengthError(0, MAX_SUFFIX_LEN)
        what = "population" if self.method == "genetic" else "width"
        for name, value in ((what, self.width), ("steps", self.steps), ("batch_size", self.batch_size)):
            if value < 1:
                raise SearchWidthError(name, value)
        if self.topk < 1 or self.n_replace < 1 or self.buffer_size < 1:
            raise InvalidConfigError("topk, n_replace and buffer_size must each be at least 1.")
        if self.max_new_tokens < 1:
            raise InvalidConfigError(f"max_new_tokens {self.max_new_tokens} must be at least 1.")
        if self.method == "genetic" and not 0 <= self.elites < self.width:
            raise InvalidConfigError(f"elites {self.elites} must be in 0..population-1 ({self.width - 1}).")
        for name, p in (
            ("mutation_rate", self.mutation_rate),
            ("crossover_rate", self.crossover_rate),
            ("explore", self.explore),
        ):
            if not 0.0 <= p <= 1.0:
                raise InvalidConfigError(f"{name} {p} must be between 0 and 1.")
        if self.mellowmax_alpha <= 0:
            raise InvalidConfigError(f"mellowmax_alpha {self.mellowmax_alpha} must be positive.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
