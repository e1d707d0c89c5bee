"""The model's shape, read once from the Hugging Face config."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from neuroscope.errors import InvalidConfigError


@dataclass(frozen=True)
class HookedConfig:
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    model_type: str
    name: str
    normalization: str
    parallel_attn_mlp: bool = False
    final_logit_softcap: float | None = None

    def __post_init__(self) -> None:
        for f in ("n_layers", "n_heads", "n_kv_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx"):
            if getattr(self, f) <= 0:
                raise InvalidConfigError(f"HookedConfig.{f} must be positive, got {getattr(self, f)}")
        if self.n_heads % self.n_kv_heads:
            raise InvalidConfigError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )

    @classmethod
    def from_hf(cls, config: Any, name: str, normalization: str, parallel: bool) -> HookedConfig:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        d_model = _first(text, "hidden_size", "n_embd", "d_model")
        n_heads = _first(text, "num_attention_heads", "n_head")
        d_head = getattr(text, "head_dim", None) or d_model // n_heads
        n_kv = getattr(text, "num_key_value_heads", None) or n_heads
        d_mlp = _first(text, "intermediate_size", "n_inner", default=None) or 4 * d_model
        return cls(
            n_layers=_first(text, "num_hidden_layers", "n_layer"),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            d_model=d_model,
            d_head=d_head,
            d_mlp=d_mlp,
            d_vocab=text.vocab_size,
            n_ctx=_first(text, "max_position_embeddings", "n_positions", "n_ctx"),
            model_type=text.model_type,
            name=name,
            normalization=normalization,
            parallel_attn_mlp=parallel,
            final_logit_softcap=getattr(text, "final_logit_softcapping", None),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(config: Any, *names: str, default: Any = ...) -> Any:
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    if default is ...:
        raise InvalidConfigError(f"config has none of {names}")
    return default
