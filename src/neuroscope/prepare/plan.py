"""How big the prepared suite is: chosen from the model's shape so that the first start stays short.

The feature lab's SAE sits at the middle layer (layer 15 of smollm2-135m's 30, the README's default), and the
suite holds the two layers below it too, so a provenance graph reaches depth 3 from it. The token count
follows a fixed compute budget (``PREPARE_FLOPS``): recording costs about two multiply-adds per block parameter
up to the last recorded layer, training about six per encoder/decoder weight per epoch and layer. On this
project's 2-core machine the budget is about five minutes of one-thread work for smollm2-135m
(benchmarks/results/prepare.json has the measured figure).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.config import HookedConfig
    from neuroscope.sae.suite import SuiteConfig

PREPARE_FLOPS = 8.0e12
MIN_TOKENS, MAX_TOKENS = 2_048, 262_144
MAX_LATENTS = 16_384
EPOCHS = 2
SUITE_DEPTH = 3  # layers in the suite: the feature lab's and the ones below it (provenance depth)


@dataclass(frozen=True)
class PreparePlan:
    """A default suite: TopK SAEs at ``blocks.L.hook_resid_post`` for ``layers``; the Features view shows the
    one at ``feature_layer``. ``tokens``/``heldout_tokens`` are recorded once for all layers."""

    layers: tuple[int, ...]
    feature_layer: int
    tokens: int
    heldout_tokens: int
    k: int
    expansion: float
    epochs: int = EPOCHS
    batch_size: int = 1024
    lr: float = 2e-3
    ctx_len: int = 128
    ce_contexts: int = 2  # the eval table's CE loss recovered: a few full forwards per layer

    def __post_init__(self) -> None:
        if self.feature_layer not in self.layers:
            raise InvalidConfigError(
                f"the feature layer {self.feature_layer} is not one of the layers {list(self.layers)}"
            )
        if self.tokens < self.ctx_len or self.heldout_tokens < self.ctx_len:
            raise InvalidConfigError(
                f"tokens ({self.tokens}) and heldout_tokens ({self.heldout_tokens}) must each hold at least "
                f"one context of {self.ctx_len} tokens"
            )

    def suite_config(self, data: str) -> SuiteConfig:
        from neuroscope.sae.suite import SuiteConfig

        return SuiteConfig(
            layers=self.layers,
            hook="resid_post",
            tokens=self.tokens,
            heldout_tokens=self.heldout_tokens,
            k=self.k,
            expansion=self.expansion,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            ctx_len=self.ctx_len,
            data=data,
            features=True,
            ce_contexts=self.ce_contexts,
        )

    def sae_name(self) -> str:
        """The name the Features view lists the prepared SAE under."""
        return f"prepared-l{self.feature_layer}-k{self.k}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "layers": list(self.layers)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreparePlan:
        return cls(**{**d, "layers": tuple(int(x) for x in d["layers"])})


def flops_per_token(cfg: HookedConfig, layers: tuple[int, ...], d_sae: int, epochs: int) -> float:
    """Multiply-adds ×2 per recorded token: the forward up to the last layer, then the SAEs' training."""
    block = 4 * cfg.d_model * cfg.n_heads * cfg.d_head + 3 * cfg.d_model * cfg.d_mlp
    record = 2.0 * block * (max(layers) + 1)
    train = 6.0 * 2 * cfg.d_model * d_sae * epochs * len(layers)
    return record * 1.25 + train  # the held-out quarter is recorded too


def plan_for(cfg: HookedConfig, tokens: int | None = None) -> PreparePlan:
    """The default plan for a model; ``tokens`` overrides the budget's choice (tests and small demos)."""
    feature_layer = cfg.n_layers // 2
    layers = tuple(range(max(0, feature_layer - SUITE_DEPTH + 1), feature_layer + 1))
    expansion = min(8.0, MAX_LATENTS / cfg.d_model)
    d_sae = int(expansion * cfg.d_model)
    k = max(1, min(64, d_sae // 8))
    ctx_len = min(128, cfg.n_ctx)
    if tokens is None:
        tokens = int(PREPARE_FLOPS / flops_per_token(cfg, layers, d_sae, EPOCHS))
        tokens = min(MAX_TOKENS, max(MIN_TOKENS, tokens))
    if tokens < 2 * ctx_len:
        raise InvalidConfigError(f"prepare at least {2 * ctx_len} tokens for this model, got {tokens}")
    tokens = -(-tokens // ctx_len) * ctx_len
    heldout = max(ctx_len, (tokens // 4) // ctx_len * ctx_len)
    batch = max(64, min(1024, tokens // 32))
    return PreparePlan(
        layers, feature_layer, tokens, heldout, k, expansion, batch_size=batch, ctx_len=ctx_len
    )
