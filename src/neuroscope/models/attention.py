"""The attention kernel behind ``attn.hook_attn_scores`` and ``attn.hook_pattern``.

Hugging Face models call a pluggable attention function. We register one that defers to SDPA unless the
calling context hooks this layer's scores or pattern (or the model soft-caps scores, which SDPA cannot do);
only then are the scores materialised. So patterns cost nothing unless asked for.

:func:`record_attention` keeps what each call saw instead (queries and keys after RoPE, the mask as one key
interval per query), so that any rows of a pattern can be computed later exactly as the eager kernel
computes them (:meth:`AttentionInputs.rows`) while the forward itself stays on SDPA: memory linear in the
prompt, where a pattern is quadratic.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
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
# (layers to record, layer -> what its attention call saw) of the calling context: a ContextVar, so a forward
# on another thread (the workbench's attack search) never records into a graph's run
_RECORD: ContextVar[tuple[frozenset[int], dict[int, AttentionInputs]] | None] = ContextVar(
    "neuroscope_attention_record", default=None
)


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
            record = _RECORD.get()
            if record is not None and names is not None and names[0] in record[0]:
                record[1][names[0]] = AttentionInputs.capture(query, key, attention_mask, **kwargs)
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
        value = value.repeat_interleave(n_rep, dim=1)
    scores = _scores(query, key, scaling, softcap)
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
    pattern = _softmax(scores, query.dtype)
    if state is not None and sites is not None:
        new = _apply(state, sites[1], pattern)
        if new is not None:
            pattern = new
    out = torch.matmul(pattern, value).transpose(1, 2).contiguous()
    return out, pattern


def _scores(
    query: torch.Tensor, key: torch.Tensor, scaling: float | None, softcap: float | None
) -> torch.Tensor:
    """``[batch, head, q, k]`` scores before the mask: GQA's key heads repeated, scaled, soft-capped."""
    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:
        key = key.repeat_interleave(n_rep, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    return scores


def _softmax(scores: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # at least float32 (half-precision models), and float64 in a float64 model: there SDPA's softmax is
    # float64 too, so a hooked (eager) forward equals the plain one to float64 rounding
    pattern = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(dtype)
    # a fully masked row (padding queries) softmaxes to NaN; it attends to nothing
    return torch.nan_to_num(pattern, nan=0.0)


@dataclass(frozen=True)
class AttentionInputs:
    """What one attention call saw, enough to compute any rows of its pattern as :func:`eager_attention`
    does, in memory linear in the prompt: the queries and keys (after RoPE, before GQA's repetition), the
    scaling and soft-cap, and the mask as one allowed key interval ``[lo, hi]`` per query row (causal and
    sliding-window masks are intervals). A mask that is not (an additive one, or holes in a row) is kept as
    it is: quadratic, but never the case for one unpadded prompt."""

    query: torch.Tensor  # [batch, head, q, d_head]
    key: torch.Tensor  # [batch, kv_head, k, d_head]
    scaling: float | None
    softcap: float | None
    lo: torch.Tensor | None  # [batch or 1, q]: first allowed key
    hi: torch.Tensor | None  # [batch or 1, q]: last allowed key (lo > hi: the row attends to nothing)
    mask: torch.Tensor | None  # the mask itself, only when it is not intervals

    @classmethod
    def capture(
        cls,
        query: torch.Tensor,
        key: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        softcap: float | None = None,
        **_: Any,
    ) -> AttentionInputs:
        q_len, k_len = query.shape[2], key.shape[2]
        query, key = query.detach(), key.detach()
        if attention_mask is None:  # causal, the queries being the last q_len positions
            hi = torch.arange(q_len, device=query.device)[None] + (k_len - q_len)
            return cls(query, key, scaling, softcap, torch.zeros_like(hi), hi, None)
        mask = attention_mask.detach()[..., :k_len]
        if mask.dtype == torch.bool and mask.shape[1] == 1:
            m = mask[:, 0].to(torch.uint8)  # [batch, q, k]; one byte an entry while it is read
            count = m.sum(-1)
            empty = count == 0
            lo = torch.where(empty, k_len, m.argmax(-1))
            hi = torch.where(empty, -1, k_len - 1 - m.flip(-1).argmax(-1))
            if bool((count == (hi - lo + 1).clamp(min=0)).all()):
                return cls(query, key, scaling, softcap, lo, hi, None)
        return cls(query, key, scaling, softcap, None, None, mask)

    def rows(self, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The pattern's rows at the query ``positions``: ``[batch, head, len(positions), key]``."""
        P = torch.as_tensor(positions, dtype=torch.long, device=self.query.device)
        scores = _scores(self.query[:, :, P], self.key, self.scaling, self.softcap)
        if self.mask is not None:
            if self.mask.dtype == torch.bool:
                scores = scores.masked_fill(~self.mask[:, :, P], float("-inf"))
            else:
                scores = scores + self.mask[:, :, P]
        else:
            assert self.lo is not None and self.hi is not None
            ar = torch.arange(self.key.shape[2], device=scores.device)
            allowed = (ar >= self.lo[:, P, None]) & (ar <= self.hi[:, P, None])  # [batch, n, key]
            scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        return _softmax(scores, self.query.dtype)

    def nbytes(self) -> int:
        """What is kept (to show it grows with the prompt, not its square)."""
        kept = (self.query, self.key, self.lo, self.hi, self.mask)
        return sum(t.numel() * t.element_size() for t in kept if t is not None)


@contextmanager
def record_attention(layers: Iterable[int]) -> Iterator[dict[int, AttentionInputs]]:
    """Within the body, the calling context's forwards record what the attention of ``layers`` saw (layer ->
    :class:`AttentionInputs`; a later forward overwrites). The forward keeps its kernel (SDPA)."""
    store: dict[int, AttentionInputs] = {}
    token = _RECORD.set((frozenset(layers), store))
    try:
        yield store
    finally:
        _RECORD.reset(token)
