"""JumpReLU (Rajamanoharan et al. 2024; SAELens's ``jumprelu``): a latent passes its pre-activation only
above its own learned threshold. The step has no gradient, so the threshold learns through a
straight-through estimator: a rectangle kernel of width ``jumprelu_bandwidth`` around the threshold
stands in for the step's derivative, both in the reconstruction (through the jump) and in the sparsity
penalty, which is the L0 itself (``step``, DeepMind) or ``tanh`` of the latents (Anthropic).

As in SAELens 6.54, the threshold is trained directly (not as its logarithm: Adam moves a parameter by
about ``lr`` a step, so a log-parameterised small threshold would barely move) and kept >= 0 by
projection after each step; SAELens's older ``log_threshold`` tensors are converted on load."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from neuroscope.errors import SAEArchitectureError
from neuroscope.sae.archs.base import Architecture, StepOut, fvu_of, jump

if TYPE_CHECKING:
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.model import SAE

SPARSITY_MODES = ("step", "tanh")


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """``x · [x > θ]``; d/dθ ≈ -(θ/ε)·rect((x-θ)/ε); d/dx = [x > θ] (+ the estimator with ``ste_to_input``)."""

    @staticmethod
    def forward(ctx, x, threshold, bandwidth, ste_to_input):  # type: ignore[override]
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth, ctx.ste_to_input = bandwidth, ste_to_input
        return x * (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, threshold = ctx.saved_tensors
        ste = (threshold / ctx.bandwidth) * _rectangle((x - threshold) / ctx.bandwidth) * g
        x_grad = (x > threshold).to(g.dtype) * g
        if ctx.ste_to_input:
            x_grad = x_grad + ste
        return x_grad, -ste.sum(0), None, None


class _Step(torch.autograd.Function):
    """``[x > θ]``; d/dθ ≈ -(1/ε)·rect((x-θ)/ε) (and its negation to ``x`` with ``ste_to_input``)."""

    @staticmethod
    def forward(ctx, x, threshold, bandwidth, ste_to_input):  # type: ignore[override]
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth, ctx.ste_to_input = bandwidth, ste_to_input
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, threshold = ctx.saved_tensors
        ste = (1.0 / ctx.bandwidth) * _rectangle((x - threshold) / ctx.bandwidth) * g
        return (ste if ctx.ste_to_input else None), -ste.sum(0), None, None


def jumprelu_step(
    sae: SAE,
    pre: torch.Tensor,
    err_of: Callable[[torch.Tensor], torch.Tensor],
    total_var: torch.Tensor,
    n_tokens: int,
    step: int,
    *,
    fvu_loss: bool = False,
) -> StepOut:
    """One JumpReLU training batch, shared by the SAE and the transcoders: ``err_of`` maps the latents to the
    reconstruction error (the SAE's input, a transcoder's target). The reconstruction term is SAELens's summed
    squared error per token, or the FVU with ``fvu_loss`` (the transcoders', comparable across hooks)."""
    c = sae.cfg
    z = _JumpReLU.apply(pre, sae.threshold, c.jumprelu_bandwidth, c.jumprelu_ste_to_input)
    err = err_of(z)
    if c.jumprelu_sparsity_loss_mode == "step":
        penalty = _Step.apply(pre, sae.threshold, c.jumprelu_bandwidth, c.jumprelu_ste_to_input)
    else:  # decoder rows are unit norm, so SAELens's tanh(scale · z · |W_dec|) is tanh(scale · z)
        penalty = torch.tanh(c.jumprelu_tanh_scale * z)
    ramp = min(1.0, (step + 1) / c.l0_warm_up_steps) if c.l0_warm_up_steps else 1.0
    sparsity = penalty.sum() / n_tokens
    fvu = fvu_of(err, total_var)
    recon = fvu if fvu_loss else err.pow(2).sum() / n_tokens
    active = (z > 0).detach()
    return StepOut(
        recon + ramp * c.l0_coefficient * sparsity,
        fvu,
        err,
        pre,
        None,
        active.any(0),
        active.sum(),
        {"sparsity_loss": float(sparsity.detach()), "threshold": float(sae.threshold.detach().mean())},
    )


class JumpReLU(Architecture):
    """Loss: squared error summed over d_in, mean over tokens (SAELens's MSE) + ``l0_coefficient`` (ramped
    up linearly over ``l0_warm_up_steps``) × the mean sparsity penalty per token."""

    name = "jumprelu"
    saelens = "jumprelu"
    cfg_keys = (
        "l0_coefficient",
        "jumprelu_init_threshold",
        "jumprelu_bandwidth",
        "jumprelu_sparsity_loss_mode",
        "jumprelu_tanh_scale",
        "jumprelu_ste_to_input",
        "l0_warm_up_steps",
    )
    tensors = ("threshold",)

    def validate(self, cfg: SAEConfig) -> None:
        if cfg.jumprelu_sparsity_loss_mode not in SPARSITY_MODES:
            raise SAEArchitectureError(
                f"jumprelu_sparsity_loss_mode must be one of {', '.join(SPARSITY_MODES)}, "
                f"got {cfg.jumprelu_sparsity_loss_mode!r}"
            )
        for key in ("jumprelu_bandwidth", "jumprelu_tanh_scale"):
            if not getattr(cfg, key) > 0:
                raise SAEArchitectureError(f"{key} must be > 0, got {getattr(cfg, key)}")
        for key in ("jumprelu_init_threshold", "l0_coefficient", "l0_warm_up_steps"):
            if getattr(cfg, key) < 0:
                raise SAEArchitectureError(f"{key} must be >= 0, got {getattr(cfg, key)}")

    def init_extra(self, sae: SAE) -> None:
        sae.threshold = nn.Parameter(torch.full((sae.d_sae,), float(sae.cfg.jumprelu_init_threshold)))

    def activate(self, sae: SAE, pre: torch.Tensor) -> torch.Tensor:
        return jump(pre, sae.threshold)

    def train_step(
        self, sae: SAE, x: torch.Tensor, total_var: torch.Tensor, n_tokens: int, step: int
    ) -> StepOut:
        return jumprelu_step(sae, sae.pre_acts(x), lambda z: x - sae.decode(z), total_var, n_tokens, step)

    @torch.no_grad()
    def after_step(self, sae: SAE) -> None:
        sae.threshold.data.clamp_(min=0.0)

    def saelens_cfg(self, cfg: SAEConfig) -> dict[str, Any]:
        return {k: getattr(cfg, k) for k in self.cfg_keys}

    def load_tensors(self, state: dict[str, torch.Tensor], d_sae: int) -> dict[str, torch.Tensor]:
        if "threshold" not in state and "log_threshold" in state:
            return {"threshold": state["log_threshold"].float().exp()}
        return super().load_tensors(state, d_sae)
