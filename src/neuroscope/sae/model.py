"""Sparse autoencoders: one module for every architecture; the architecture (:mod:`neuroscope.sae.archs`)
adds its extra tensors (a JumpReLU ``threshold``), picks the inference rule and the training loss.

Weights follow SAELens's layout and naming (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``,
``b_dec``, ``threshold [d_sae]``) so a saved SAE is a SAELens SAE. Decoder rows (one per latent) have
unit norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn

from neuroscope.errors import InvalidConfigError
from neuroscope.sae.archs import Architecture, get_architecture
from neuroscope.sae.config import SAEConfig


class _GatherPreActs(torch.autograd.Function):
    """``pre.gather(1, idx)`` for ``pre = xc @ W_enc + b_enc`` computed densely without autograd, with a
    sparse backward: only the ``m`` selected latents per row get gradient, so the encoder's backward costs
    ``m·d_in`` per token instead of ``d_sae·d_in`` (the dense backward is most of a TopK step on CPU)."""

    @staticmethod
    def forward(ctx, xc, W_enc, b_enc, pre, idx):  # type: ignore[override]
        ctx.save_for_backward(xc, W_enc, idx)
        return pre.gather(1, idx)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        xc, W_enc, idx = ctx.saved_tensors
        n, m = idx.shape
        d_sae = W_enc.shape[1]
        rows = torch.arange(n, device=idx.device).repeat_interleave(m)
        flat_idx, flat_g = idx.reshape(-1), g.reshape(-1).to(W_enc.dtype)
        G_t = torch.sparse_coo_tensor(
            torch.stack([flat_idx, rows]), flat_g, (d_sae, n), check_invariants=False
        )
        grad_W = torch.sparse.mm(G_t, xc).t()  # [d_in, d_sae]
        grad_b = torch.zeros(d_sae, dtype=W_enc.dtype, device=W_enc.device).index_add_(0, flat_idx, flat_g)
        grad_x = None
        if ctx.needs_input_grad[0]:
            G = torch.sparse_coo_tensor(
                torch.stack([rows, flat_idx]), flat_g, (n, d_sae), check_invariants=False
            )
            grad_x = torch.sparse.mm(G, W_enc.t().contiguous())
        return grad_x, grad_W, grad_b, None, None


class SAE(nn.Module):
    threshold: torch.Tensor  # JumpReLU-style architectures only
    W_skip: torch.Tensor  # skip transcoders only

    def __init__(self, cfg: SAEConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.arch: Architecture = get_architecture(cfg.arch)
        gen = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        # tied initialisation (encoder = decoder transpose) avoids early dead latents (Gao et al. 2024);
        # scaled down so the first reconstructions are not k times too large
        self.W_enc = nn.Parameter((w_dec.t() * 0.1).contiguous())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.arch.init_extra(self)

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.d_in:
            raise InvalidConfigError(
                f"This SAE has d_in={self.d_in} but the activations have width {x.shape[-1]}."
            )

    def pre_acts(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... d_sae"]:
        self._check(x)
        return self.arch.centre(self, x.to(self.W_enc.dtype)) @ self.W_enc + self.b_enc

    def encode_topk(
        self, x: Float[torch.Tensor, "... d_in"]
    ) -> tuple[Float[torch.Tensor, "... k"], Int[torch.Tensor, "... k"], Float[torch.Tensor, "... d_sae"]]:
        """TopK only: (values, latent indices, ReLU'd pre-activations) of the ``k`` largest latents."""
        pre = F.relu(self.pre_acts(x))
        vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return vals, idx, pre

    def gather_pre_acts(
        self,
        xc: Float[torch.Tensor, "n d_in"],
        pre: Float[torch.Tensor, "n d_sae"],
        idx: Int[torch.Tensor, "n m"],
    ) -> Float[torch.Tensor, "n m"]:
        """Selected pre-activations with gradient (sparse backward); ``xc = x - b_dec`` with its graph and
        ``pre`` its detached dense pre-activations."""
        return _GatherPreActs.apply(xc, self.W_enc, self.b_enc, pre, idx)

    def encode(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... d_sae"]:
        """Latents by the architecture's inference rule (BatchTopK and Matryoshka: their threshold)."""
        return self.arch.activate(self, self.pre_acts(x))

    def decode(self, z: Float[torch.Tensor, "... d_sae"]) -> Float[torch.Tensor, "... d_in"]:
        return z @ self.W_dec + self.b_dec

    def decode_sparse(
        self, vals: Float[torch.Tensor, "n k"], idx: Int[torch.Tensor, "n k"], bias: bool = True
    ) -> Float[torch.Tensor, "n d_in"]:
        """Decode ``k`` active latents per row without materialising ``[n, d_sae]``: a gather of ``k`` rows
        (embedding_bag), so decoding and its backward cost ``k`` rather than ``d_sae`` per token."""
        out = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum")
        return out + self.b_dec if bias else out

    def forward(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... d_in"]:
        return self.arch.forward(self, x)

    # --- constraints ----------------------------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.data /= self.W_dec.data.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the part of the decoder gradient along each (unit) row, which renormalising would undo."""
        if self.W_dec.grad is None:
            return
        w = self.W_dec.data
        self.W_dec.grad -= (self.W_dec.grad * w).sum(-1, keepdim=True) * w

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Trained on ``scale * x``: make the SAE take raw ``x``. Dividing both biases by ``scale`` divides
        every pre-activation by it (a positive scale keeps signs and order), so latents shrink by
        ``1/scale`` and the reconstruction comes out in raw units; thresholds on pre-activations shrink
        with them; the decoder keeps unit-norm rows."""
        self.b_enc.data /= scale
        self.b_dec.data /= scale
        self.arch.fold_input_scale(self, scale)


def geometric_median(points: Float[torch.Tensor, "n d"], iters: int = 50, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm; robust to the few huge-norm outlier tokens a mean would chase."""
    y = points.mean(0)
    for _ in range(iters):
        w = 1.0 / (points - y).norm(dim=-1).clamp_min(eps)
        y_new = (w[:, None] * points).sum(0) / w.sum()
        if (y_new - y).norm() < eps * max(1.0, float(y.norm())):
            return y_new
        y = y_new
    return y
