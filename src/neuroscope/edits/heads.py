"""Head-level edits: zero- or mean-ablate chosen heads at chosen positions.

A head is a slice of ``attn.hook_z`` (the output projection's input, ``[pos, head, d_head]``): with grouped
query attention (smollm2: 9 query heads, 3 key/value heads) a key/value head feeds several query heads, so
head edits act on ``o_proj``'s input slice, never on ``k_proj``/``v_proj``. The hooked edit is
:class:`neuroscope.interventions.Ablate`. Zeroing a head at every position is linear: ``o_proj`` loses the
columns of that slice, ``ΔW = −W_o[:, S] E_S``, whose rank is at most ``d_head`` per head. It has a closed
form when that rank fits ``r ≤ 16`` (tiny models with ``d_head = 16``, one head); smollm2's ``d_head = 64``
does not, and a mean ablation adds a constant no LoRA can hold, so those are distilled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from neuroscope.edits.edit import LoraEdit, check_rank
from neuroscope.edits.targets import base_module, targets, weight_out_in
from neuroscope.errors import InvalidConfigError, RankOutOfRangeError
from neuroscope.interventions import Ablate, Intervention

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

HeadMode = Literal["zero", "mean"]


@dataclass(frozen=True)
class HeadTarget:
    layer: int
    head: int
    positions: tuple[int, ...] | None = None  # None: every position; -1: the last one

    def label(self) -> str:
        pos = "" if self.positions is None else "@" + "+".join(map(str, self.positions))
        return f"{self.layer}.{self.head}{pos}"


def parse_heads(text: str) -> list[HeadTarget]:
    """``"3.1,4.2@last,5.0@3+7"`` → heads ``L.H`` with optional positions (``last`` = -1, ``all``)."""
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lh, _, pos = part.partition("@")
        try:
            layer, head = (int(x) for x in lh.split("."))
            positions: tuple[int, ...] | None = None
            if pos and pos != "all":
                positions = tuple(-1 if p == "last" else int(p) for p in pos.split("+"))
        except ValueError:
            raise InvalidConfigError(
                f"--heads takes LAYER.HEAD[@POS] items (POS: all, last, or positions joined by +), got {part!r}"
            ) from None
        out.append(HeadTarget(layer, head, positions))
    if not out:
        raise InvalidConfigError("select at least one head (LAYER.HEAD)")
    return out


def head_reference(
    model: HookedModel, heads: Sequence[HeadTarget], mode: HeadMode = "zero", reference: Any = None
) -> list[Intervention]:
    """The hooked edit: one :class:`Ablate` per distinct position set (``mean``: over ``reference``)."""
    for h in heads:
        model.check_head(h.layer, h.head)
    groups: dict[tuple[int, ...] | None, list[tuple[int, int]]] = {}
    for h in heads:
        groups.setdefault(h.positions, []).append((h.layer, h.head))
    return [
        Ablate(heads=hs, mode=mode, reference=reference, positions=None if pos is None else list(pos))
        for pos, hs in groups.items()
    ]


def o_proj_path(model: HookedModel, layer: int) -> str:
    return f"{model.adapter.layers}.{layer}.{model.adapter.sites['attn.hook_z'].module}"


def head_ablation_edit(model: HookedModel, heads: Sequence[HeadTarget], rank: int = 16) -> LoraEdit:
    """The closed form of zeroing ``heads`` at every position (raises where its rank exceeds ``rank``)."""
    check_rank(rank)
    for h in heads:
        model.check_head(h.layer, h.head)
        if h.positions is not None:
            raise InvalidConfigError(
                f"head {h.label()} is edited at some positions only: no weight edit can see positions; distil it"
            )
    dh = model.cfg.d_head
    by_layer: dict[int, list[int]] = {}
    for h in heads:
        by_layer.setdefault(h.layer, []).append(h.head)
    dtype = torch.float64 if model.dtype == torch.float64 else torch.float32
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    ranks = {}
    for layer, hs in sorted(by_layer.items()):
        path = o_proj_path(model, layer)
        W = weight_out_in(model, path).double()  # [d_model, n_heads*d_head]
        cols = torch.cat([torch.arange(h * dh, (h + 1) * dh) for h in sorted(set(hs))])
        U, S, Vh = torch.linalg.svd(W[:, cols], full_matrices=False)
        k = int((1e-9 * float(S.max()) < S).sum()) if S.numel() else 0
        ranks[layer] = k
        if k > rank:
            raise RankOutOfRangeError(
                f"zeroing heads {sorted(set(hs))} of layer {layer} is a rank-{k} change of {path} "
                f"({len(set(hs))} x d_head {dh}), over rank {rank}: distil it (--method distil) instead"
            )
        A = torch.zeros(rank, W.shape[1], dtype=torch.float64)
        A[:k, cols] = Vh[:k]
        B = torch.zeros(W.shape[0], rank, dtype=torch.float64)
        B[:, :k] = -U[:, :k] * S[:k]
        modules[path] = (A.to(dtype).contiguous(), B.to(dtype).contiguous())
    for p in modules:
        base_module(model.hf_model.get_submodule(p))  # exists (raises with the path otherwise)
    tg = targets(model, list(modules))
    info = {
        "method": "heads",
        "family": "head ablation",
        "model": model.cfg.name,
        "heads": [h.label() for h in heads],
        "mode": "zero",
        "layers": sorted(by_layer),
        "delta_rank": ranks,
        "exact": True,
        "inexact_reasons": [],
    }
    return LoraEdit(rank, modules, frozenset(t.path for t in tg if t.kind == "embedding"), info)


def head_distill_paths(model: HookedModel, heads: Sequence[HeadTarget], layers_back: int = 2) -> list[str]:
    """Distillation targets for a head edit: the attention and MLP projections of the last ``layers_back``
    layers up to the last edited one (fused projections counted once)."""
    last = max(h.layer for h in heads)
    first = max(0, min(h.layer for h in heads) - layers_back + 1)
    sites = (
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_z",
        "mlp.hook_pre",
        "mlp.hook_pre_linear",
        "mlp.hook_post",
    )
    out: list[str] = []
    for layer in range(first, last + 1):
        for s in sites:
            if s in model.adapter.sites:
                p = f"{model.adapter.layers}.{layer}.{model.adapter.sites[s].module}"
                if p not in out:
                    out.append(p)
    return out
