"""ReLU with an L1 penalty (SAELens's ``standard``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from neuroscope.sae.archs.base import Architecture, StepOut, fvu_of

if TYPE_CHECKING:
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.model import SAE


class ReLU(Architecture):
    """Loss: squared error summed over d_in, mean over tokens, + ``l1_coefficient`` × L1 of the latents
    (decoder rows are unit norm, so this is SAELens's decoder-norm-weighted L1)."""

    name = "relu"
    saelens = "standard"
    cfg_keys = ("l1_coefficient",)

    def train_step(
        self, sae: SAE, x: torch.Tensor, total_var: torch.Tensor, n_tokens: int, step: int
    ) -> StepOut:
        z = F.relu(sae.pre_acts(x))
        err = x - sae.decode(z)
        loss = (err.pow(2).sum() + sae.cfg.l1_coefficient * z.sum()) / n_tokens
        return StepOut(loss, fvu_of(err, total_var), err, z, None, (z > 0).any(0), (z > 0).sum())

    def saelens_cfg(self, cfg: SAEConfig) -> dict[str, Any]:
        return {"l1_coefficient": cfg.l1_coefficient}
