"""One recording pass of every chosen layer's MLP input and output (the project's recorder), and the
``[x, y]`` pairs of one layer read back for training and evaluation.

Why the recorder rather than live forward passes (as eai-sparsify trains): on this 2-core CPU the model's
forward (~200 tokens/s) costs more per token than training one layer's transcoder (~2,000 tokens/s), so
the forward must run once for all layers; live training would then hold every layer's transcoder and Adam
state at once (30 × ~60 MB for smollm2-135m) and allow one epoch only. Recorded in float16 the pairs take
``2 · d_model · 2`` bytes per token per layer (250k tokens × 30 layers of smollm2-135m: ~17 GB before
zstd), each layer then trains from RAM for as many epochs as asked, and a killed run resumes shard by
shard (the recorder) and layer by layer (:mod:`neuroscope.transcoders.train`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from neuroscope.transcoders.model import HOOK_IN, HOOK_OUT

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.record.reader import ActivationStore


def pair_hooks(layers: Sequence[int]) -> tuple[str, ...]:
    return tuple(h.format(layer=l) for l in layers for h in (HOOK_IN, HOOK_OUT))


def record_pairs(
    model: HookedModel,
    layers: Sequence[int],
    data: str,
    split: str,
    tokens: int,
    ctx_len: int,
    out: str | os.PathLike,
    progress: bool = True,
    on_tokens: Callable[[int, int], object] | None = None,
) -> ActivationStore:
    """Record (or resume recording) the MLP input/output of ``layers`` over ``tokens`` tokens of a split."""
    from neuroscope.record.reader import ActivationStore
    from neuroscope.record.writer import TraceConfig, record

    cfg = TraceConfig(hooks=pair_hooks(layers), data=data, split=split, tokens=tokens, ctx_len=ctx_len)
    record(model, cfg, Path(out), progress, on_tokens)
    return ActivationStore(out)


def read_pairs(
    store: ActivationStore, layer: int, max_tokens: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, token_id)`` of one layer in recording order, special tokens (BOS, padding) left out."""
    bx = store.read_all(HOOK_IN.format(layer=layer), max_tokens)
    by = store.read_all(HOOK_OUT.format(layer=layer), max_tokens)
    special = torch.tensor(store.special_token_ids, dtype=torch.long)
    keep = ~torch.isin(bx.token_id, special) if special.numel() else torch.ones_like(bx.token_id, dtype=torch.bool)
    return bx.acts[keep], by.acts[keep], bx.token_id[keep]
