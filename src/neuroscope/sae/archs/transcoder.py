"""Transcoders as SAE architectures: the encoder reads one hook (the MLP's input), the decoder predicts another
(its output), optionally beside a linear skip term ``x @ W_skip`` (Paulo et al. 2025, "skip transcoders").

A training batch is ``[x, y]`` concatenated along the last axis (``2 * d_in`` wide): the trainer's input
scale is applied to both halves alike (a transcoder is linear in ``(x, y)`` up to its biases, so folding
the scale back works as for an SAE), its variance, ``b_dec`` initialisation and FVU use the target half
(:meth:`Architecture.target`), and AuxK has dead latents predict the transcoder's residual error. The
encoder does not subtract ``b_dec`` (input and output spaces differ: :meth:`Architecture.centre`).

Losses: TopK, the FVU of the MLP output (+ the trainer's AuxK); JumpReLU, that FVU + ``l0_coefficient``
times the mean straight-through L0 per token (ramped over ``l0_warm_up_steps``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from neuroscope.sae.archs.base import Architecture, StepOut, fvu_of, topk_lr
from neuroscope.sae.archs.jumprelu import JumpReLU, jumprelu_step
from neuroscope.sae.archs.topk import check_k

if TYPE_CHECKING:
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.model import SAE

_JUMPRELU = JumpReLU()


class _TranscoderBase(Architecture):
    kind = "transcoder"
    skip: ClassVar[bool] = False

    def batch_width(self, cfg: SAEConfig) -> int:
        return 2 * cfg.d_in

    def target(self, cfg: SAEConfig, batch: torch.Tensor) -> torch.Tensor:
        return batch[..., cfg.d_in :] if batch.shape[-1] == 2 * cfg.d_in else batch

    def centre(self, sae: SAE, x: torch.Tensor) -> torch.Tensor:
        return x

    def init_extra(self, sae: SAE) -> None:
        if self.skip:
            sae.W_skip = nn.Parameter(torch.zeros(sae.d_in, sae.d_in))

    @torch.no_grad()
    def init_from_sample(self, sae: SAE, sample: torch.Tensor) -> None:
        """A skip transcoder starts from the least-squares linear map (ridge, tiny λ) and its intercept, so
        the sparse latents learn the MLP's nonlinear remainder from the first step."""
        if not self.skip:
            return
        d = sae.d_in
        x, y = sample[:, :d].double(), sample[:, d:].double()
        mx, my = x.mean(0), y.mean(0)
        xc = x - mx
        gram = xc.T @ xc
        gram += 1e-4 * gram.diagonal().mean() * torch.eye(d, dtype=gram.dtype)
        w = torch.linalg.solve(gram, xc.T @ (y - my))
        sae.W_skip.data.copy_(w.to(sae.W_skip.dtype))
        sae.b_dec.data.copy_((my - mx @ w).to(sae.b_dec.dtype))

    def skip_out(self, sae: SAE, x: torch.Tensor) -> torch.Tensor | float:
        return x @ sae.W_skip if self.skip else 0.0

    def forward(self, sae: SAE, x: torch.Tensor) -> torch.Tensor:
        return (sae.decode(sae.encode(x)) + self.skip_out(sae, x.to(sae.W_enc.dtype))).to(x.dtype)

    def fold_input_scale(self, sae: SAE, scale: float) -> None:
        # W_skip maps scaled x to scaled y: it is the same map on raw activations
        with torch.no_grad():
            for name in self.tensors:
                getattr(sae, name).data /= scale


class TopKTranscoder(_TranscoderBase):
    name = "topk_transcoder"
    saelens = ""  # SAELens 6.54 has no TopK transcoder
    cfg_keys = ("k",)
    uses_k = True

    def validate(self, cfg: SAEConfig) -> None:
        check_k(cfg)

    def activate(self, sae: SAE, pre: torch.Tensor) -> torch.Tensor:
        vals, idx = pre.topk(sae.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, F.relu(vals))

    def train_step(
        self, sae: SAE, batch: torch.Tensor, total_var: torch.Tensor, n_tokens: int, step: int
    ) -> StepOut:
        d = sae.d_in
        x, y = batch[:, :d], batch[:, d:]
        with torch.no_grad():
            pre = x @ sae.W_enc + sae.b_enc
        idx = pre.topk(sae.cfg.k, dim=-1, sorted=False).indices
        vals = F.relu(sae.gather_pre_acts(x, pre, idx))
        err = y - sae.decode_sparse(vals, idx) - self.skip_out(sae, x)
        fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=x.device)
        fired[idx[vals > 0]] = True
        fvu = fvu_of(err, total_var)
        return StepOut(fvu, fvu, err, pre, x, fired, (vals > 0).sum())

    def default_lr(self, cfg: SAEConfig) -> float:
        return topk_lr(cfg)

    def saelens_cfg(self, cfg: SAEConfig) -> dict[str, Any]:
        return {"k": cfg.k}


class JumpReLUTranscoder(_TranscoderBase):
    """The JumpReLU SAE's threshold, estimator and penalty (one implementation: :data:`_JUMPRELU` and
    :func:`jumprelu_step`) with the transcoder's target, skip term and FVU reconstruction loss."""

    name = "jumprelu_transcoder"
    saelens = "jumprelu_transcoder"  # SAELens's own names for the JumpReLU ones
    cfg_keys = JumpReLU.cfg_keys
    tensors = JumpReLU.tensors

    def validate(self, cfg: SAEConfig) -> None:
        _JUMPRELU.validate(cfg)

    def init_extra(self, sae: SAE) -> None:
        super().init_extra(sae)
        _JUMPRELU.init_extra(sae)

    def activate(self, sae: SAE, pre: torch.Tensor) -> torch.Tensor:
        return _JUMPRELU.activate(sae, pre)

    def train_step(
        self, sae: SAE, batch: torch.Tensor, total_var: torch.Tensor, n_tokens: int, step: int
    ) -> StepOut:
        d = sae.d_in
        x, y = batch[:, :d], batch[:, d:]
        pre = x @ sae.W_enc + sae.b_enc
        return jumprelu_step(
            sae,
            pre,
            lambda z: y - sae.decode(z) - self.skip_out(sae, x),
            total_var,
            n_tokens,
            step,
            fvu_loss=True,
        )

    def after_step(self, sae: SAE) -> None:
        _JUMPRELU.after_step(sae)

    def saelens_cfg(self, cfg: SAEConfig) -> dict[str, Any]:
        return _JUMPRELU.saelens_cfg(cfg)


class TopKSkipTranscoder(TopKTranscoder):
    name = "topk_skip_transcoder"
    skip = True


class JumpReLUSkipTranscoder(JumpReLUTranscoder):
    name = "jumprelu_skip_transcoder"
    saelens = "jumprelu_skip_transcoder"
    skip = True


TRANSCODER_ARCHS: tuple[Architecture, ...] = (
    TopKTranscoder(),
    TopKSkipTranscoder(),
    JumpReLUTranscoder(),
    JumpReLUSkipTranscoder(),
)


def transcoder_arch(activation: str, skip: bool) -> str:
    """The registry name of a transcoder with this activation (``topk`` or ``jumprelu``) and skip term."""
    return f"{activation}_skip_transcoder" if skip else f"{activation}_transcoder"
