"""TopK: keep each token's ``k`` largest pre-activations (Gao et al. 2024; SAELens's ``topk``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from neuroscope.errors import InvalidConfigError
from neuroscope.sae.archs.base import Architecture, StepOut, fvu_of, topk_lr

if TYPE_CHECKING:
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.model import SAE


def check_k(cfg: SAEConfig) -> None:
    if not 1 <= cfg.k <= cfg.d_sae:
        raise InvalidConfigError(f"k must be in 1..d_sae ({cfg.d_sae}), got {cfg.k}")


def detached_pre(sae: SAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(xc, pre)``: ``xc = x - b_dec`` with its graph and the dense pre-activations without one. Latents
    are then chosen from ``pre`` and only theirs recomputed with gradient (:meth:`SAE.gather_pre_acts`, a
    sparse backward), so a step costs ``m`` rather than ``d_sae`` per token in the encoder's backward."""
    xc = x - sae.b_dec
    with torch.no_grad():
        pre = xc @ sae.W_enc + sae.b_enc
    return xc, pre


def sparse_out(
    sae: SAE,
    x: torch.Tensor,
    total_var: torch.Tensor,
    xc: torch.Tensor,
    pre: torch.Tensor,
    idx: torch.Tensor,
    keep: torch.Tensor | None = None,
) -> tuple[StepOut, torch.Tensor]:
    """The step output for latents ``idx [n, m]`` (``keep`` masks padding slots), and their values."""
    vals = F.relu(sae.gather_pre_acts(xc, pre, idx))
    if keep is not None:
        vals = vals * keep
    err = x - sae.decode_sparse(vals, idx)
    fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=x.device)
    fired[idx[vals > 0]] = True
    fvu = fvu_of(err, total_var)
    return StepOut(fvu, fvu, err, pre, xc, fired, (vals > 0).sum()), vals


class TopK(Architecture):
    """Loss: FVU of the batch (squared error over the batch's total variance); AuxK is the trainer's."""

    name = "topk"
    saelens = "topk"
    cfg_keys = ("k",)
    uses_k = True

    def validate(self, cfg: SAEConfig) -> None:
        check_k(cfg)

    def activate(self, sae: SAE, pre: torch.Tensor) -> torch.Tensor:
        vals, idx = F.relu(pre).topk(sae.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals)

    def forward(self, sae: SAE, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        vals, idx, _ = sae.encode_topk(x.reshape(-1, shape[-1]))
        return sae.decode_sparse(vals, idx).reshape(shape).to(x.dtype)

    def train_step(
        self, sae: SAE, x: torch.Tensor, total_var: torch.Tensor, n_tokens: int, step: int
    ) -> StepOut:
        xc, pre = detached_pre(sae, x)
        idx = pre.topk(sae.cfg.k, dim=-1, sorted=False).indices
        return sparse_out(sae, x, total_var, xc, pre, idx)[0]

    def default_lr(self, cfg: SAEConfig) -> float:
        return topk_lr(cfg)

    def saelens_cfg(self, cfg: SAEConfig) -> dict[str, Any]:
        return {"k": cfg.k, "rescale_acts_by_decoder_norm": False}
