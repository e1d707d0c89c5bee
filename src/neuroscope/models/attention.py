"""The attention kernel behind ``attn.hook_attn_scores`` and ``attn.hook_pattern``.

Hugging Face models call a pluggable attention function. We register one that defers to SDPA unless the
calling context hooks this layer's scores or pattern (or the model soft-caps scores, which SDPA cannot do);
only then are the scores materialised. So patterns cost nothing unless asked for.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, cast

import torch
from torch import nn

from neuroscope.models.hooks import (
    BoundSite,
    HookState,
    _apply,
    _identity_read,
    _identity_write,
    current_state,
)

IMPLEMENTATION = "neuroscope"
_registered = False
_lock = threading.Lock()
# attention module -> (layer, scores hook name, pattern hook name); filled when a model is wrapped. Names, not
# BoundSites: a BoundSite holds its module, and a value that referenced its key would keep every wrapped
# attention module (and its weights) alive for the life of the process.
_SITES: weakref.WeakKeyDictionary[nn.Module, tuple[int, str, str]] = weakref.WeakKeyDictionary()


def _bound(module: nn.Module, names: tuple[int, str, str]) -> tuple[BoundSite, BoundSite]:
    layer, scores, pattern = names
    return (
        BoundSite(scores, layer, module, "fn", _identity_read, _identity_write),
        BoundSite(pattern, layer, module, "fn", _identity_read, _identity_write),
    )


def register_attention() -> None:
    """Register the kernel with transformers (idempotent; called when a model is loaded, not on import)."""
    global _registered
    with _lock:
        if _registered:
            return
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        def attention(module: nn.Module, query, key, value, attention_mask, **kwargs: Any):
            names = _SITES.get(module)
            state = current_state()
            wanted = (
                names is not None and state is not None and (names[1] in state.fns or names[2] in state.fns)
            )
            if wanted or kwargs.get("softcap") is not None:
                sites = _bound(module, names) if names is not None else None
                return eager_attention(
                    module, query, key, value, attention_mask, state if wanted else None, sites, **kwargs
                )
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

        ALL_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)
        _registered = True


def bind_attention_sites(attn_modules: list[nn.Module], sites: list[tuple[BoundSite, ...]]) -> None:
    for module, (scores, pattern) in zip(attn_modules, sites, strict=True):
        _SITES[module] = (cast(int, scores.layer), scores.name, pattern.name)


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,  # [batch, head, q, d_head]
    key: torch.Tensor,  # [batch, kv_head, k, d_head]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    state: HookState | None,
    sites: tuple[BoundSite, ...] | None,
    scaling: float | None = None,
    softcap: float | None = None,
    dropout: float = 0.0,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    q_len, k_len = scores.shape[-2:]
    if attention_mask is None:
        # SDPA's "no mask" means causal; queries are the last q_len of the k_len positions.
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
        scores = scores.masked_fill(~allowed, float("-inf"))
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask[..., :k_len], float("-inf"))
    else:
        scores = scores + attention_mask[..., :k_len]
    if state is not None and sites is not None:
        new = _apply(state, sites[0], scores)
        if new is not None:
            scores = new
    pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    # a fully masked row (padding queries) softmaxes to NaN; it attends to nothing
    pattern = torch.nan_to_num(pattern, nan=0.0)
    if state is not None and sites is not None:
        new = _apply(state, sites[1], pattern)
        if new is not None:
            pattern = new
    out = torch.matmul(pattern, value).transpose(1, 2).contiguous()
    return out, pattern
