"""Reusing one run's keys and values for the positions a later run leaves unchanged.

In a causal model position t reads only positions ≤ t. A run that differs from a recorded one only from
position p on (a patch at p, say) can take the recorded keys and values of positions < p and compute only
positions ≥ p: ``HookedModel.run_with_cache(..., prefix=kv.upto(p))``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel, Tokens


@dataclass(frozen=True)
class KVPrefix:
    """The keys and values of one prompt's first ``length`` positions at every layer (batch 1)."""

    ids: torch.Tensor  # [1, pos]: the whole prompt the keys and values were recorded from
    keys: tuple[torch.Tensor, ...]  # per layer [1, kv_head, pos, d_head], as the model's cache stores them
    values: tuple[torch.Tensor, ...]
    length: int

    def upto(self, length: int) -> KVPrefix:
        if not 0 <= length < self.ids.shape[1]:
            raise IndexOutOfRangeError("prefix length", length, self.ids.shape[1])
        return KVPrefix(self.ids, self.keys, self.values, length)

    def inputs(self, tokens: Tokens, cache_kwarg: str) -> tuple[torch.Tensor, dict[str, Any]]:
        """The Hugging Face forward's input ids (positions ≥ ``length``) and its cache and position keywords."""
        ids, n = tokens.ids, self.length
        if tokens.attention_mask is not None:
            raise InvalidConfigError("a run with a reused prefix takes unpadded rows")
        # the run's tokens must start with the recorded ones, or the reused keys would belong to another text
        if ids.shape[1] <= n or not bool((ids[:, :n] == self.ids[:, :n].to(ids.device)).all()):
            raise InvalidConfigError(
                "a run with a reused prefix must start with the prefix's tokens and extend past them"
            )
        if n == 0:
            return ids, {}
        pos = torch.arange(n, ids.shape[1], device=ids.device)[None]
        return ids[:, n:], {cache_kwarg: self.cache(), "use_cache": True, "position_ids": pos}

    def cache(self) -> Any:
        """A fresh Hugging Face cache holding the prefix, each layer extended to the rows that reach it."""
        from transformers.cache_utils import Cache

        n = self.length
        return Cache(
            layers=[
                _broadcast_layer(k[:, :, :n], v[:, :, :n])
                for k, v in zip(self.keys, self.values, strict=True)
            ]
        )


def supports_prefix(model: HookedModel) -> bool:
    """Whether the model's cache holds one plain key/value pair per layer that a later run may extend.

    Layers that share another layer's keys (Gemma 3n) or keep a recurrent state (hybrid SSMs) do not; such
    models run every position instead (the results are the same, only slower).
    """
    config = model.hf_model.config
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "num_kv_shared_layers", 0):
        return False
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    return kinds <= {"full_attention", "sliding_attention"}


def record_prefix(model: HookedModel, ids: torch.Tensor) -> KVPrefix | None:
    """One plain forward of ``ids`` ([1, pos]) keeping every layer's keys and values; None when the model
    cannot reuse them (:func:`supports_prefix`)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if ids.shape[0] != 1:
        raise InvalidConfigError(f"a prefix is recorded from one prompt, got a batch of {ids.shape[0]}")
    if not supports_prefix(model):
        return None
    # no config: every layer keeps all its positions (a sliding-window layer would keep only the window)
    cache = DynamicCache()
    with torch.no_grad():
        model.hf_model(input_ids=ids, use_cache=True, logits_to_keep=1, **{model._cache_kwarg: cache})
    layers = [l for l in cache.layers if isinstance(l, DynamicLayer) and l.get_seq_length() == ids.shape[1]]
    if len(layers) != model.cfg.n_layers:  # a layer without its own plain keys and values
        return None
    keys = tuple(cast(torch.Tensor, l.keys) for l in layers)
    return KVPrefix(ids, keys, tuple(cast(torch.Tensor, l.values) for l in layers), 0)


@functools.cache
def _broadcast_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class BroadcastLayer(DynamicLayer):
        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            assert self.keys is not None and self.values is not None
            b = key_states.shape[0]
            self.keys = torch.cat([self.keys.expand(b, -1, -1, -1), key_states], dim=-2)
            self.values = torch.cat([self.values.expand(b, -1, -1, -1), value_states], dim=-2)
            return self.keys, self.values

    return BroadcastLayer


def _broadcast_layer(keys: torch.Tensor, values: torch.Tensor) -> Any:
    """A cache layer holding one row of past keys and values that every row of the run shares (a view, not a
    copy per row). Rows may join a run at a later layer (``HookState.grow``), so a layer learns its batch only
    when its new keys arrive."""
    layer = _broadcast_layer_class()()
    layer.lazy_initialization(keys, values)
    layer.keys, layer.values = keys, values
    return layer
