"""Matryoshka BatchTopK (Bussmann et al. 2025; SAELens's ``matryoshka_batchtopk``): BatchTopK whose loss
is summed over nested dictionary prefixes, so the first latents must reconstruct well on their own. This
pushes general features into early latents and lowers feature absorption. Saved like BatchTopK, as a
SAELens ``jumprelu`` SAE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import MatryoshkaPrefixError
from neuroscope.sae.archs.base import StepOut, fvu_of
from neuroscope.sae.archs.batchtopk import BatchTopK

if TYPE_CHECKING:
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.model import SAE


def check_widths(widths: tuple[int, ...], d_sae: int) -> None:
    if not widths:
        raise MatryoshkaPrefixError(
            "A matryoshka SAE needs its nested prefix widths (matryoshka_widths / --matryoshka-prefixes, "
            f"e.g. {max(1, d_sae // 16)},{max(1, d_sae // 4)},{d_sae})."
        )
    bad = [w for w in widths if not 1 <= w <= d_sae]
    if bad:
        raise MatryoshkaPrefixError(f"Matryoshka prefix widths must be in 1..d_sae ({d_sae}); got {bad}.")
    if any(b <= a for a, b in zip(widths, widths[1:], strict=False)):
        raise MatryoshkaPrefixError(
            f"Matryoshka prefix widths must be strictly increasing, got {list(widths)}."
        )


class Matryoshka(BatchTopK):
    name = "matryoshka"
    cfg_keys = ("k", "topk_threshold_lr", "matryoshka_widths")

    def validate(self, cfg: SAEConfig) -> None:
        super().validate(cfg)
        check_widths(cfg.matryoshka_widths, cfg.d_sae)

    def normalize(self, cfg: SAEConfig) -> dict[str, Any]:
        # as SAELens does, the whole dictionary is always the last prefix
        widths = tuple(int(w) for w in cfg.matryoshka_widths)
        if widths and widths[-1] < cfg.d_sae:
            widths = (*widths, cfg.d_sae)
        return {"matryoshka_widths": widths}

    def train_step(
        self, sae: SAE, x: torch.Tensor, total_var: torch.Tensor, n_tokens: int, step: int
    ) -> StepOut:
        out, vals, idx = self.select(sae, x, total_var)
        # the whole dictionary is the last prefix (out.loss); each inner prefix adds its own FVU
        metrics = {"threshold": float(sae.threshold[0])}
        for w in sae.cfg.matryoshka_widths[:-1]:
            inner = sae.decode_sparse(vals * (idx < w).to(vals.dtype), idx)
            fvu_w = fvu_of(x - inner, total_var)
            out.loss = out.loss + fvu_w
            metrics[f"fvu_{w}"] = float(fvu_w.detach())
        out.metrics = metrics
        return out

    def saelens_cfg(self, cfg: SAEConfig) -> dict[str, Any]:
        return {**super().saelens_cfg(cfg), "matryoshka_widths": list(cfg.matryoshka_widths)}
