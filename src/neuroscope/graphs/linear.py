"""Local linearisation of a transformer block around one run: norm scales frozen, attention patterns frozen.

With the scale of every norm fixed to its value in the run, a norm is a linear map; with attention patterns
fixed, a head's output at a query position is a fixed mixture of linear functions of the residual at its
source positions. What remains nonlinear is the MLP, which is differentiated at its actual input. These
pieces read the block's modules through the adapter's sites, so they serve every architecture: pre-norm
(Llama family), post-sublayer norms (Gemma 2/3, folded into the frozen map), parallel attention + MLP
(GPT-NeoX) and GPT-2's biases.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

ROLES = ("ln1", "ln2", "attn_post", "mlp_post")


def _is_norm(module: nn.Module) -> bool:
    return "Norm" in type(module).__name__


def norm_eps(module: nn.Module) -> float:
    return float(getattr(module, "variance_epsilon", None) or getattr(module, "eps", None) or 1e-5)


def norm_scale(module: nn.Module, x: torch.Tensor, kind: str) -> torch.Tensor:
    """The per-token scale the norm multiplies by (``[..., 1]``), computed as the model computes it."""
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    var = xf.var(-1, keepdim=True, unbiased=False) if kind == "layer" else xf.pow(2).mean(-1, keepdim=True)
    return torch.rsqrt(var + norm_eps(module)).to(x.dtype)


def frozen_norm(module: nn.Module, x: torch.Tensor, scale: torch.Tensor, kind: str) -> torch.Tensor:
    """The norm with its scale fixed: a linear map of ``x`` (plus LayerNorm's bias)."""
    w = cast(torch.Tensor, module.weight)
    if kind == "layer":
        out = (x - x.mean(-1, keepdim=True)) * scale * w
        bias = getattr(module, "bias", None)
        return out + bias if bias is not None else out
    weight = w + 1.0 if kind == "rms_plus_one" else w
    return x * scale * weight


@dataclass(frozen=True)
class BlockParts:
    """The modules of one block that the linearisation needs."""

    layer: int
    norms: dict[str, nn.Module]  # role -> norm module (attn_post / mlp_post only for Gemma 2/3)
    mlp: nn.Module
    v_site: Any  # BoundSite of attn.hook_v: module + read codec
    W_O: torch.Tensor  # [head, d_head, d_model]
    parallel: bool


def block_parts(model: HookedModel, layer: int) -> BlockParts:
    sites = model.adapter.sites
    block = model.layer_module(layer)
    norms = {
        "ln1": block.get_submodule(model.adapter.ln1),
        "ln2": block.get_submodule(sites["ln2.hook_normalized"].module),
    }
    for role, site in (("attn_post", "hook_attn_out"), ("mlp_post", "hook_mlp_out")):
        mod = block.get_submodule(sites[site].module)
        if _is_norm(mod):
            norms[role] = mod
    mlp_path = sites["mlp.hook_post"].module.rsplit(".", 1)[0]
    return BlockParts(
        layer=layer,
        norms=norms,
        mlp=block.get_submodule(mlp_path),
        v_site=model.sites[f"blocks.{layer}.attn.hook_v"],
        W_O=model.W_O(layer),
        parallel=model.cfg.parallel_attn_mlp,
    )


@contextmanager
def capture_scales(model: HookedModel, layers: list[int]) -> Iterator[dict[tuple[int, str], torch.Tensor]]:
    """Record every norm's scale (``[batch, pos, 1]``) in the listed blocks during the body's forward."""
    store: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    kind = model.cfg.normalization
    owner = threading.get_ident()
    for layer in layers:
        for role, mod in block_parts(model, layer).norms.items():

            def hook(module: nn.Module, args: tuple, output: Any, _key=(layer, role)) -> None:
                if threading.get_ident() != owner:  # see ``frozen_norms``
                    return
                store[_key] = norm_scale(module, args[0], kind).detach()

            handles.append(mod.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def frozen_norms(model: HookedModel, scales: dict[tuple[int, str], torch.Tensor]) -> Iterator[None]:
    """Within the body, the norms of the blocks in ``scales`` use the recorded scales (broadcast over the
    batch): the forward is then the model with its norm scales frozen at the recorded run's values."""
    handles = []
    kind = model.cfg.normalization
    layers = sorted({l for l, _ in scales})
    # module hooks act on every thread's forward, and the workbench runs an attack search on a thread of its
    # own beside the graph being built: only this thread's forwards are frozen (or recorded, above). The soak
    # caught a search's one-token forward overwriting a graph's recorded scales.
    owner = threading.get_ident()
    for layer in layers:
        for role, mod in block_parts(model, layer).norms.items():
            if (layer, role) not in scales:
                continue

            def hook(
                module: nn.Module, args: tuple, output: Any, _s=scales[(layer, role)]
            ) -> torch.Tensor | None:
                if threading.get_ident() != owner:
                    return None
                return frozen_norm(module, args[0], _s, kind).to(output.dtype)

            handles.append(mod.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def head_directions(
    parts: BlockParts, d: torch.Tensor, attn_post_scale: torch.Tensor | None, kind: str
) -> torch.Tensor:
    """``∂(d · attn_out[p]) / ∂z[p]`` per head: ``[n, head, d_head]`` for readout directions ``d [n, d_model]``
    at the query positions (``attn_post_scale [n, 1]``: the frozen post-attention norm's scale there)."""
    if "attn_post" in parts.norms and attn_post_scale is not None:
        d = frozen_norm(parts.norms["attn_post"], d, attn_post_scale, kind)  # RMS: diagonal, so self-adjoint
    return torch.einsum("hed,nd->nhe", parts.W_O.to(d.dtype), d)


def mlp_gradients(
    parts: BlockParts,
    x: torch.Tensor,
    d: torch.Tensor,
    ln2_scale: torch.Tensor,
    post_scale: torch.Tensor | None,
    kind: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For MLP inputs ``x [n, d_model]`` (the residual it reads) and readouts ``d [n, d_model]`` on its output:
    (values ``d · mlp_out``, gradients ``∂(d · mlp_out)/∂x``), norm scales frozen. One batched backward."""
    with torch.enable_grad():
        xi = x.detach().clone().requires_grad_(True)
        h = frozen_norm(parts.norms["ln2"], xi, ln2_scale, kind)
        out = parts.mlp(h)
        if "mlp_post" in parts.norms and post_scale is not None:
            out = frozen_norm(parts.norms["mlp_post"], out, post_scale, kind)
        vals = (out * d).sum(-1)
        (grad,) = torch.autograd.grad(vals.sum(), xi)
    return vals.detach(), grad


def value_gradients(
    parts: BlockParts,
    x: torch.Tensor,
    cot: torch.Tensor,
    kv: torch.Tensor,
    ln1_scale: torch.Tensor,
    kind: str,
) -> torch.Tensor:
    """Gradients of ``cot · v[kv]`` with respect to the residual ``x [n, d_model]`` a head reads its value
    from (``cot [n, d_head]``, ``kv [n]`` the KV head of each row, ``ln1_scale [n, 1]`` frozen). The map is
    linear, so the gradient is exact for any size of change."""
    with torch.enable_grad():
        xi = x.detach().clone().requires_grad_(True)
        h = frozen_norm(parts.norms["ln1"], xi, ln1_scale, kind)
        v = parts.v_site.read(parts.v_site.module(h))  # [n, kv_head, d_head]
        picked = v[torch.arange(v.shape[0]), kv]
        (grad,) = torch.autograd.grad((picked * cot).sum(), xi)
    return grad
