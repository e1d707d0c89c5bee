"""Training configuration: one frozen dataclass, validated on construction, saved next to the checkpoints."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from neuroscope.errors import InvalidConfigError

N_RANDOM_TOKENS = 256  # the byte tokenizer's ordinary tokens; BOS/EOS/PAD sit above them


@dataclass(frozen=True)
class TrainConfig:
    """A seeded training run of a small GPT-2 on repeated random token sequences."""

    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads per block."""
    d_model: int = 128
    """Residual stream width (d_head = d_model / n_heads)."""
    attn_only: bool = True
    """Zero and freeze the MLPs, giving Elhage et al.'s attention-only transformer inside a stock GPT-2."""
    sinusoidal_init: bool = False
    """Start the learned position table from sinusoids (Vaswani et al.) instead of GPT-2's noise (in one trial
    on pure repeat data it did not shorten the plateau)."""
    tie_embeddings: bool = False
    """Tie the unembedding to the embedding (GPT-2's default). Off by default: on uniform random targets the
    unembedding gradient pushes tied token embeddings toward each other, blurring the token identity that
    induction has to match on."""
    n_ctx: int = 64
    """Training sequence length (tokens, BOS included); also the model's position table."""
    vocab: int = N_RANDOM_TOKENS
    """Random tokens are drawn from ids 0..vocab-1 (at most 256, the byte tokenizer's ordinary tokens). A large
    vocabulary keeps the tokens of a segment mostly distinct, so one token finds the match (in our trials with 64
    tokens, layer 1 learned to copy through heads attending one position past the induction target)."""
    min_repeat: int = 10
    """Shortest repeated segment X; each row draws len(X) uniformly from [min_repeat, max_repeat]."""
    max_repeat: int = 30
    """Longest repeated segment X."""
    text: str | None = None
    """Optional English text to mix in: a ``.jsonl`` of ``{"text": ...}`` rows (e.g. the record corpus's
    ``train.jsonl``) or a plain ``.txt``. Off by default: the synthetic recipe alone forms the circuit."""
    text_fraction: float = 0.5
    """Share of each batch's rows that are text windows when ``text`` is set."""
    skip_fraction: float = 0.25
    """Share of rows of a previous-token task: triples ``a, r, perm(a)`` for a fixed random permutation, so the
    token after ``r`` is a function of the token one back and of nothing further back. It rewards a layer-0
    previous-token head on its own, which the induction head then composes with (in our trials without these
    rows no layer-0 head passed a previous-token score of 0.25 in 1,500 steps; with an unbroken skip-bigram
    chain instead of triples, layer 0 also grew heads looking 3 back and layer 1 attended one position past the
    induction target)."""
    skip_marker: bool = False
    """Start previous-token rows with EOS instead of BOS (off: the model then gates its previous-token heads on
    the marker)."""
    batch_size: int = 32
    steps: int = 2000
    lr: float = 1e-3
    warmup: int = 0
    """Linear warm-up steps, then constant learning rate (a decay would blur the step axis of the formation plot)."""
    weight_decay: float = 0.01
    """AdamW weight decay, on every trained parameter (torch's default)."""
    head_lasso: float = 0.03
    """Group-lasso weight on the heads of layers 1 and up: ``head_lasso * sum_h ||(W_Q^h, W_K^h, W_V^h, W_O^h)||``
    is added to the loss. Splitting one circuit over k copies of a head costs about sqrt(k) times as much under
    it, so it favours a single induction head over several redundant ones (0: off). Without it all four layer-1
    heads of the default model become induction heads at once and zero-ablating any one of them leaves in-context
    copying intact (docs/induction/RECIPE.md). The loss log records the language-model loss without the penalty."""
    head_lasso_start: int = 500
    """The head lasso applies after this step, once the circuit has formed (applied from step 0, at 0.003 or 0.02, it
    kept every layer-1 head too small for the circuit to form by step 400 or 500)."""
    seed: int = 0
    checkpoint_every: int = 50
    """Save a checkpoint every this many steps (step 0, the initialisation, is always saved)."""
    eval_seq_len: int = 25
    """Length of the random half in the BOS + X + X evaluation sequences (2 * eval_seq_len + 1 <= n_ctx)."""
    threads: int = 1
    """torch threads for training (0: leave torch's default). One thread keeps a run bit-for-bit reproducible and
    leaves the other core to whoever shares the machine."""

    def __post_init__(self) -> None:
        positive = (
            "n_layers",
            "n_heads",
            "d_model",
            "n_ctx",
            "vocab",
            "min_repeat",
            "max_repeat",
            "batch_size",
            "steps",
            "checkpoint_every",
            "eval_seq_len",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise InvalidConfigError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise InvalidConfigError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.vocab > N_RANDOM_TOKENS:
            raise InvalidConfigError(
                f"vocab must be <= {N_RANDOM_TOKENS} (the byte tokenizer), got {self.vocab}"
            )
        if self.max_repeat < self.min_repeat:
            raise InvalidConfigError(
                f"max_repeat ({self.max_repeat}) must be >= min_repeat ({self.min_repeat})"
            )
        if 2 * self.max_repeat + 1 > self.n_ctx:
            raise InvalidConfigError(
                f"n_ctx ({self.n_ctx}) must hold BOS + two copies of max_repeat ({self.max_repeat})"
            )
        if 2 * self.eval_seq_len + 1 > self.n_ctx:
            raise InvalidConfigError(
                f"eval sequences (2 * eval_seq_len + 1 = {2 * self.eval_seq_len + 1}) must fit n_ctx ({self.n_ctx})"
            )
        if not 0.0 <= self.skip_fraction < 1.0:
            raise InvalidConfigError(f"skip_fraction must be in [0, 1), got {self.skip_fraction}")
        if not 0.0 <= self.text_fraction <= 1.0:
            raise InvalidConfigError(f"text_fraction must be in [0, 1], got {self.text_fraction}")
        if not (
            self.lr > 0
            and self.weight_decay >= 0
            and self.head_lasso >= 0
            and self.warmup >= 0
            and self.threads >= 0
        ):
            raise InvalidConfigError(
                "lr must be > 0; weight_decay, head_lasso, warmup and threads must be >= 0"
            )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def checkpoint_steps(self) -> list[int]:
        steps = list(range(0, self.steps, self.checkpoint_every))
        return steps + [self.steps]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        data = json.loads(Path(path).read_text())
        return cls(**{k: v for k, v in data.items() if k in known})
