"""ΔW = W_tuned − W_base for every linear module of every block: its singular spectrum and top directions.

Weights are oriented ``[out, in]`` (GPT-2's Conv1D is transposed), so the left singular vectors live in the
module's output space: for the attention output (``o_proj``) and MLP output (``down_proj``) projections
that is the residual stream, where they can be compared with SAE decoder rows. SVDs run on the CPU in
float64. ``energy_topk`` is the fraction of ‖ΔW‖²_F in the top ``k`` singular values; ``effective_rank`` is
exp(entropy) of the normalised squared spectrum (1 for a rank-one update, the rank for a flat spectrum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from neuroscope.models.quantize import dequantized_weight

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass
class ModuleDiff:
    name: str  # blocks.{l}.{module path}
    layer: int
    kind: str  # attn_out | mlp_out | other
    shape: tuple[int, int]  # [out, in]
    norm: float  # ‖ΔW‖_F
    rel_norm: float  # ‖ΔW‖_F / ‖W_base‖_F
    singular_values: list[float]  # the top k
    energy_topk: float
    effective_rank: float
    u: torch.Tensor | None = field(default=None, repr=False)  # [out, k] top left singular vectors

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "u"}

    @property
    def writes_residual(self) -> bool:
        return self.kind in ("attn_out", "mlp_out")


def _linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"


def _oriented(m: nn.Module) -> torch.Tensor:
    w = dequantized_weight(m).detach()
    return (w.T if type(m).__name__ == "Conv1D" else w).to("cpu", torch.float64)


def linear_modules(model: HookedModel, layer: int) -> dict[str, nn.Module]:
    """Every linear module of one block, by its path inside the block (adapter wrappers looked through)."""
    block = model.layer_module(layer)
    out = {}
    for path, m in block.named_modules():
        if path.endswith("base_layer") or ".lora_" in path or path.startswith("lora_"):
            continue
        inner = getattr(m, "base_layer", m)
        if _linear(inner):
            out[path] = inner
    return out


def spectrum(dw: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All singular values (descending) and the top ``k`` left singular vectors of ``dw`` (float64)."""
    u, s, _ = torch.linalg.svd(dw, full_matrices=False)
    # directions of (numerically) zero singular values are arbitrary: a rank-r update keeps r directions
    # (float32 weights leave rounding noise ~1e-7 of the update's scale in the other singular values)
    r = int((s > s[0] * 1e-5).sum()) if s.numel() and s[0] > 0 else 0
    return s, u[:, : min(k, r)]


def weight_diff(base: HookedModel, tuned: HookedModel, k: int = 8) -> list[ModuleDiff]:
    """Per linear module: ΔW's spectrum and top-``k`` directions, largest ‖ΔW‖_F first. Call
    :func:`neuroscope.diff.check_comparable` first (this assumes the two models have the same shapes)."""
    sites = tuned.adapter.sites
    kinds = {sites["attn.hook_z"].module: "attn_out", sites["mlp.hook_post"].module: "mlp_out"}
    out = []
    for layer in range(tuned.cfg.n_layers):
        mb, mt = linear_modules(base, layer), linear_modules(tuned, layer)
        for path, m in mt.items():
            wt, wb = _oriented(m), _oriented(mb[path])
            dw = wt - wb
            norm = float(dw.norm())
            if norm == 0.0:
                s, u = torch.zeros(min(dw.shape), dtype=torch.float64), torch.zeros(dw.shape[0], 0)
            else:
                s, u = spectrum(dw, k)
            e = s.square()
            total = float(e.sum())
            p = e / total if total > 0 else e
            ent = float(-(p[p > 0] * p[p > 0].log()).sum()) if total > 0 else 0.0
            out.append(
                ModuleDiff(
                    name=f"blocks.{layer}.{path}",
                    layer=layer,
                    kind=kinds.get(path, "other"),
                    shape=(int(dw.shape[0]), int(dw.shape[1])),
                    norm=norm,
                    rel_norm=norm / max(float(wb.norm()), 1e-12),
                    singular_values=[float(x) for x in s[:k]],
                    energy_topk=float(e[:k].sum()) / total if total > 0 else 0.0,
                    effective_rank=math.exp(ent) if total > 0 else 0.0,
                    u=u.float() if norm > 0 else None,
                )
            )
    return sorted(out, key=lambda d: -d.norm)
