"""The KV-cached form of the split parts: each part takes its own layers' past keys and values and returns them
extended, so a generation step feeds only the new token(s) and costs one position per token.

One graph per part serves both the prompt and every later step: the past always starts with one dummy slot
that the mask hides (torch.export specialises dimensions of size 0 and 1, so an empty past cannot be a shape the
graph accepts). Slot ``j`` of the past holds position ``j - 1``; the new tokens take positions ``P - 1 ..``
where ``P`` is the past length (dummy included). ``attention_mask`` covers past + new slots (dummy = 0); a
masked slot is never attended to. The first call passes zeros of length 1 as every past tensor.

The blocks are the Hugging Face modules themselves; only the cache object and the 4-D mask are ours (the
library's masks assume a transformers ``Cache``). The boundary between the parts is the same residual as in the
uncached export (``blocks.{K+1}.hook_resid_pre``), so ``alpha * v`` added to it is still ``Steer``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neuroscope.errors import ExportArchitectureError
from neuroscope.export.onnx_split import quiet_export

# rotary, pre-norm decoders whose attention calls ``cache.update``; each is checked by
# tests/unit/test_export_onnx.py (cached generation == uncached == the library's hooked generation)
KV_ARCHITECTURES = ("llama", "mistral", "qwen2")


def kv_supported(model: Any) -> bool:
    return model.cfg.model_type in KV_ARCHITECTURES


def check_kv_architecture(model: Any) -> None:
    if not kv_supported(model):
        raise ExportArchitectureError(model.cfg.model_type, KV_ARCHITECTURES)


class _Presents:
    """The minimal cache interface the attention modules call: concatenate the past and keep the result."""

    def __init__(self, past: list[torch.Tensor], start: int):
        self.past, self.start = past, start
        self.present: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(
        self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, **_: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        j = layer_idx - self.start
        k = torch.cat([self.past[2 * j], k], dim=2)
        v = torch.cat([self.past[2 * j + 1], v], dim=2)
        self.present[j] = (k, v)
        return k, v


class CachedSpan(nn.Module):
    """Blocks ``start..stop-1`` (with the embedding / the head as asked) taking and returning their KV cache."""

    def __init__(self, span: nn.Module):
        super().__init__()
        self.span: Any = span  # an onnx_split._Span (typed loosely: its attributes are modules)
        self.config: Any = span.config

    @property
    def n_blocks(self) -> int:
        return len(self.span.blocks)

    def past_shape(self, batch: int, length: int) -> tuple[int, int, int, int]:
        attn = self.span.blocks[0].self_attn
        return (batch, int(self.config.num_key_value_heads), length, int(attn.head_dim))

    def empty_past(self, batch: int = 1) -> list[torch.Tensor]:
        """The first call's past: one masked dummy slot per layer."""
        dtype = next(self.span.parameters()).dtype
        return [torch.zeros(self.past_shape(batch, 1), dtype=dtype) for _ in range(2 * self.n_blocks)]

    def _mask(
        self, attention_mask: torch.Tensor, n: int, dtype: torch.dtype, window: int | None
    ) -> torch.Tensor:
        total = attention_mask.shape[1]
        q = torch.arange(n, device=attention_mask.device).unsqueeze(1) + (total - n)
        k = torch.arange(total, device=attention_mask.device).unsqueeze(0)
        allowed = (k <= q).unsqueeze(0) & attention_mask.bool()[:, None, :]
        if window:
            allowed = allowed & (q - k < window).unsqueeze(0)
        # additive: eager attention adds the mask, SDPA accepts it as is
        neg = torch.finfo(dtype).min
        return torch.where(allowed, 0.0, neg).to(dtype).unsqueeze(1)

    def forward(
        self, x: torch.Tensor, attention_mask: torch.Tensor, past: list[torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        span = self.span
        n = x.shape[1]
        offset = past[0].shape[2] - 1  # the dummy slot holds no position
        positions = (torch.arange(n, device=x.device) + offset).unsqueeze(0)
        h = span.embed_tokens(x) if span.embed_tokens is not None else x
        cache = _Presents(list(past), span.start)
        masks: dict[str, torch.Tensor] = {}
        rotary: dict[str, Any] = {}
        for j, block in enumerate(span.blocks):
            kind = span._layer_type(span.start + j)
            if kind not in masks:
                window = getattr(self.config, "sliding_window", None) if kind == "sliding_attention" else None
                masks[kind] = self._mask(attention_mask, n, h.dtype, window)
            if kind not in rotary:
                args = (h, positions, kind) if span.rotary_by_type else (h, positions)
                rotary[kind] = span.rotary(*args)
            out = block(
                h,
                attention_mask=masks[kind],
                position_ids=positions,
                position_embeddings=rotary[kind],
                cache=cache,
                use_cache=True,
            )
            h = out[0] if isinstance(out, tuple) else out
        if span.head:
            h = span.unembed(span.final_norm(h))
        presents = [t for j in range(self.n_blocks) for t in cache.present[j]]
        return (h, *presents)


def kv_names(span: CachedSpan, first: str, out: str) -> tuple[list[str], list[str]]:
    layers = range(span.span.start, span.span.start + span.n_blocks)
    past = [f"past_{kind}_{i}" for i in layers for kind in ("key", "value")]
    present = [f"present_{kind}_{i}" for i in layers for kind in ("key", "value")]
    return [first, "attention_mask", *past], [out, *present]


def export_cached(
    span: CachedSpan, first: torch.Tensor, names: tuple[list[str], list[str]], opset: int
) -> Any:
    """torch.onnx (dynamo) export with dynamic batch, new length, past length and mask length."""
    dyn = torch.export.Dim.DYNAMIC
    # examples of size >= 2 everywhere: torch.export would specialise a dimension of size 0 or 1
    batch, n, p = first.shape[0], first.shape[1], 3
    mask = torch.ones(batch, p + n, dtype=torch.long)
    mask[:, 0] = 0
    past = [torch.randn(span.past_shape(batch, p)) for _ in range(2 * span.n_blocks)]
    dims = {
        "x": {0: dyn, 1: dyn},
        "attention_mask": {0: dyn, 1: dyn},
        "past": [{0: dyn, 2: dyn} for _ in past],
    }
    return quiet_export(span, (first, mask, past), names, dims, opset)
