"""Architecture adapters: one small declarative table per Hugging Face ``model_type``.

An adapter says where each TransformerLens hook point lives among the Hugging Face modules; it never
re-implements a forward pass. Adding an architecture means adding a table, not code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from neuroscope.errors import InvalidConfigError, UnsupportedArchitectureError

IO = Literal["in", "out"]
Chunk = Literal["q", "kv", "mlp"]
Norm = Literal["rms", "rms_plus_one", "layer"]


@dataclass(frozen=True)
class Site:
    """Where one per-layer hook point lives.

    ``module`` is relative to the decoder layer; ``io`` says whether the activation is the module's first
    input or its (first) output. A fused projection is cut into ``chunks`` (sizes named after config
    quantities) and ``part`` picks one; ``heads`` reshapes the last axis to ``[head, d_head]``;
    ``interleaved`` marks GPT-NeoX's per-head ``[q|k|v]`` layout.
    """

    module: str
    io: IO = "out"
    chunks: tuple[Chunk, ...] = ()
    part: int = 0
    heads: Chunk | None = None
    interleaved: bool = False

    def __post_init__(self) -> None:
        if self.io not in ("in", "out"):
            raise InvalidConfigError(f"Site.io must be 'in' or 'out', got {self.io!r}")
        if self.chunks and not 0 <= self.part < len(self.chunks):
            raise InvalidConfigError(f"Site.part {self.part} outside chunks {self.chunks}")


@dataclass(frozen=True)
class Adapter:
    model_types: tuple[str, ...]
    layers: str
    embed: str
    final_norm: str
    unembed: str
    ln1: str
    sites: dict[str, Site]
    norm: Norm = "rms"
    pos_embed: str | None = None
    # Parallel attention + MLP (GPT-NeoX, Pythia): both read resid_pre, so there is no resid_mid.
    parallel: Callable[[Any], bool] = field(default=lambda config: False)

    def __post_init__(self) -> None:
        required = {"attn.hook_z", "hook_attn_out", "hook_mlp_out", "mlp.hook_post"}
        missing = required - set(self.sites)
        if missing:
            raise InvalidConfigError(f"adapter for {self.model_types} lacks sites {sorted(missing)}")


def _llama_like(*model_types: str, norm: Norm = "rms") -> Adapter:
    return Adapter(
        model_types=model_types,
        layers="model.layers",
        embed="model.embed_tokens",
        final_norm="model.norm",
        unembed="lm_head",
        ln1="input_layernorm",
        norm=norm,
        sites={
            "ln1.hook_normalized": Site("input_layernorm"),
            "attn.hook_q": Site("self_attn.q_proj", heads="q"),
            "attn.hook_k": Site("self_attn.k_proj", heads="kv"),
            "attn.hook_v": Site("self_attn.v_proj", heads="kv"),
            "attn.hook_z": Site("self_attn.o_proj", io="in", heads="q"),
            "hook_attn_out": Site("self_attn"),
            "ln2.hook_normalized": Site("post_attention_layernorm"),
            "mlp.hook_pre": Site("mlp.gate_proj"),
            "mlp.hook_pre_linear": Site("mlp.up_proj"),
            "mlp.hook_post": Site("mlp.down_proj", io="in"),
            "hook_mlp_out": Site("mlp"),
        },
    )


def _adapters() -> list[Adapter]:
    from neuroscope.models.adapters.tables import ADAPTERS

    return ADAPTERS


def get_adapter(model_type: str) -> Adapter:
    for adapter in _adapters():
        if model_type in adapter.model_types:
            return adapter
    raise UnsupportedArchitectureError(model_type, supported_model_types())


def supported_model_types() -> list[str]:
    return sorted(t for a in _adapters() for t in a.model_types)
