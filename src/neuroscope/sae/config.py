"""SAE and training configurations: frozen dataclasses validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from neuroscope.errors import InvalidConfigError
from neuroscope.sae.archs.registry import REGISTRY, get_architecture

# SAEs proper; transcoders (same registry, ``kind == "transcoder"``) train through neuroscope.transcoders
ARCHITECTURES = tuple(n for n, a in REGISTRY.items() if a.kind == "sae")
# the ``architecture`` each is saved as in cfg.json (SAELens spells ReLU + L1 "standard", and saves
# BatchTopK and Matryoshka as the JumpReLU SAEs they run as at inference)
SAELENS_ARCH = {name: a.saelens for name, a in REGISTRY.items()}
B_DEC_INITS = ("geometric_median", "mean", "zeros")
STRATEGIES = ("auto", "ddp")


@dataclass(frozen=True)
class SAEConfig:
    """What an SAE is. ``arch`` (see :mod:`neuroscope.sae.archs`):

    - ``relu``: ReLU with an L1 penalty of weight ``l1_coefficient``;
    - ``topk``: keep each token's ``k`` largest pre-activations;
    - ``batchtopk``: keep a batch's ``k · n`` largest (``k`` is the mean L0); at inference a JumpReLU
      threshold, a moving average (rate ``topk_threshold_lr``) of the smallest kept activation;
    - ``jumprelu``: a learned threshold per latent (straight-through estimator with a rectangle kernel
      of width ``jumprelu_bandwidth``), L0 (``step``) or ``tanh`` penalty of weight ``l0_coefficient``;
    - ``matryoshka``: BatchTopK with the loss summed over the nested prefixes ``matryoshka_widths``
      (``d_sae`` is appended when the last is smaller).

    Parameter names follow SAELens's training configs. Weights work on raw activations: the input
    normalisation used in training is folded into the biases (and thresholds) when training ends."""

    d_in: int
    d_sae: int
    arch: str = "topk"
    k: int = 32
    l1_coefficient: float = 5.0
    hook_name: str = ""
    model_name: str = ""
    dtype: str = "float32"
    topk_threshold_lr: float = 0.01
    matryoshka_widths: tuple[int, ...] = ()
    l0_coefficient: float = 1.0
    jumprelu_init_threshold: float = 0.01
    jumprelu_bandwidth: float = 0.05
    jumprelu_sparsity_loss_mode: str = "step"
    jumprelu_tanh_scale: float = 4.0
    jumprelu_ste_to_input: bool = False
    l0_warm_up_steps: int = 0

    def __post_init__(self) -> None:
        arch = get_architecture(self.arch)
        if self.d_in < 1 or self.d_sae < 1:
            raise InvalidConfigError(f"d_in and d_sae must be >= 1, got d_in={self.d_in}, d_sae={self.d_sae}")
        object.__setattr__(self, "matryoshka_widths", tuple(self.matryoshka_widths))
        for key, value in arch.normalize(self).items():
            object.__setattr__(self, key, value)
        arch.validate(self)
        if self.l1_coefficient < 0:
            raise InvalidConfigError(f"l1_coefficient must be >= 0, got {self.l1_coefficient}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Token counts are counted after special tokens (BOS, EOS, padding) are dropped.

    ``dead_tokens``: a latent that has not fired for this many training tokens counts as dead; the AuxK
    loss then trains the ``aux_k`` largest dead latents to predict the residual error (TopK and ReLU alike).

    ``outlier_factor``: tokens whose norm exceeds this multiple of the median norm are massive-activation
    outliers (see :func:`neuroscope.sae.loader.outlier_norm`); the input scale is always computed without
    them, and unless ``train_on_outliers`` they are left out of training like special tokens."""

    lr: float | None = None
    batch_size: int = 4096
    epochs: int = 1
    max_tokens: int | None = None
    seed: int = 0
    b_dec_init: str = "geometric_median"
    normalize: bool = True
    dead_tokens: int = 100_000
    aux_k: int | None = None
    aux_coefficient: float = 1 / 32
    lr_warmup_steps: int = 0
    shuffle_buffer: int = 65_536
    lr_find: bool = False
    checkpoint_every: int = 0
    progress: bool = True
    hook: str | None = None
    outlier_factor: float | None = 10.0
    train_on_outliers: bool = False
    # data-parallel training through Lightning: ``devices`` processes per node on ``num_nodes`` nodes
    # (``strategy="ddp"``; gloo on CPUs, NCCL on GPUs); ``batch_size`` is per process
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        if self.devices < 1 or self.num_nodes < 1:
            raise InvalidConfigError(
                f"devices and num_nodes must be >= 1, got devices={self.devices}, num_nodes={self.num_nodes}"
            )
        if self.strategy not in STRATEGIES:
            raise InvalidConfigError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )
        if self.world > 1 and self.strategy == "auto":
            raise InvalidConfigError(
                f"{self.devices} devices × {self.num_nodes} nodes need a distributed strategy: pass strategy='ddp'"
            )
        if self.outlier_factor is not None and not self.outlier_factor > 1:
            raise InvalidConfigError(f"outlier_factor must be > 1 (or None), got {self.outlier_factor}")
        if self.lr is not None and not self.lr > 0:
            raise InvalidConfigError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise InvalidConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise InvalidConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.b_dec_init not in B_DEC_INITS:
            raise InvalidConfigError(
                f"b_dec_init must be one of {', '.join(B_DEC_INITS)}, got {self.b_dec_init!r}"
            )
        if self.dead_tokens < 1:
            raise InvalidConfigError(f"dead_tokens must be >= 1, got {self.dead_tokens}")
        if self.aux_k is not None and self.aux_k < 1:
            raise InvalidConfigError(f"aux_k must be >= 1, got {self.aux_k}")
        if self.aux_coefficient < 0:
            raise InvalidConfigError(f"aux_coefficient must be >= 0, got {self.aux_coefficient}")

    @property
    def world(self) -> int:
        return self.devices * self.num_nodes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_lr(cfg: SAEConfig) -> float:
    """The OpenAI scaling-laws rule for TopK-like SAEs (2e-4 / sqrt(d_sae / 2**14)); 4e-4 for ReLU + L1 and
    JumpReLU (SAELens's usual range)."""
    return get_architecture(cfg.arch).default_lr(cfg)
