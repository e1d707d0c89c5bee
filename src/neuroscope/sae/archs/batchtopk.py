"""BatchTopK (Bussmann et al. 2024; SAELens's ``batchtopk``): keep the ``k · n`` largest latents of a
batch of ``n`` tokens, so ``k`` is the mean L0 and busy tokens may use more latents than quiet ones.

A batch rule cannot run on one token, so training also keeps an estimate of the smallest activation the
rule lets through (an exponential moving average, rate ``topk_threshold_lr``, of each batch's smallest
kept activation, as SAELens does, but started at the first batch's value rather than 0). Inference uses it as a JumpReLU threshold, and the SAE is saved as
SAELens saves it: a ``jumprelu`` SAE whose ``threshold`` is that value for every latent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from neuroscope.errors import SAEArchitectureError
from neuroscope.sae.archs.base import Architecture, StepOut, jump, topk_lr
from neuroscope.sae.archs.topk import check_k, detached_pre, sparse_out

if TYPE_CHECKING:
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.model import SAE


def batch_topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(idx [n, m], keep [n, m])``: per token the columns holding the batch's ``k · n`` largest ReLU'd
    pre-activations (``keep`` false on padding), found from each row's top ``m`` (doubled until no row
    could hold more) instead of a top-k over all ``n · d_sae`` values."""
    n, d_sae = pre.shape
    act = F.relu(pre)
    m = min(d_sae, 2 * k)
    while True:
        vals, idx = act.topk(m, dim=-1, sorted=True)
        thr = vals.flatten().topk(min(n * k, vals.numel()), sorted=False).values.min()
        last = vals[:, -1]
        if m == d_sae or not bool(((last >= thr) & (last > 0)).any()):
            break
        m = min(d_sae, 2 * m)
    keep = (vals >= thr) & (vals > 0)
    width = max(1, int(keep.sum(-1).max()))  # rows are sorted, so kept entries are a prefix
    return idx[:, :width], keep[:, :width]


def _all_min(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


class BatchTopK(Architecture):
    name = "batchtopk"
    saelens = "jumprelu"
    cfg_keys: ClassVar[tuple[str, ...]] = ("k", "topk_threshold_lr")
    tensors = ("threshold",)
    uses_k = True

    def validate(self, cfg: SAEConfig) -> None:
        check_k(cfg)
        if not 0 < cfg.topk_threshold_lr <= 1:
            raise SAEArchitectureError(
                f"topk_threshold_lr must be in (0, 1] (the moving average's rate), got {cfg.topk_threshold_lr}"
            )

    def init_extra(self, sae: SAE) -> None:
        sae.register_buffer("threshold", torch.zeros(sae.d_sae))

    def activate(self, sae: SAE, pre: torch.Tensor) -> torch.Tensor:
        return jump(pre, sae.threshold)

    def select(
        self, sae: SAE, x: torch.Tensor, total_var: torch.Tensor
    ) -> tuple[StepOut, torch.Tensor, torch.Tensor]:
        xc, pre = detached_pre(sae, x)
        idx, keep = batch_topk(pre, sae.cfg.k)
        out, vals = sparse_out(sae, x, total_var, xc, pre, idx, keep.to(pre.dtype))
        self.update_threshold(sae, vals, keep)
        return out, vals, idx

    @torch.no_grad()
    def update_threshold(self, sae: SAE, vals: torch.Tensor, keep: torch.Tensor) -> None:
        live = vals.detach()[keep & (vals.detach() > 0)]
        smallest = _all_min(live.min() if live.numel() else vals.new_tensor(float("inf")))
        if torch.isfinite(smallest):
            # SAELens starts the average at 0, which leaves a short run's threshold far too low (L0 at
            # inference well above k); the first batch's value is an unbiased start instead
            rate = sae.cfg.topk_threshold_lr if bool(sae.threshold.any()) else 1.0
            sae.threshold.mul_(1 - rate).add_(rate * smallest)

    def train_step(
        self, sae: SAE, x: torch.Tensor, total_var: torch.Tensor, n_tokens: int, step: int
    ) -> StepOut:
        out = self.select(sae, x, total_var)[0]
        out.metrics = {"threshold": float(sae.threshold[0])}
        return out

    def default_lr(self, cfg: SAEConfig) -> float:
        return topk_lr(cfg)

    def saelens_cfg(self, cfg: SAEConfig) -> dict[str, Any]:
        return {"k": cfg.k, "topk_threshold_lr": cfg.topk_threshold_lr}
