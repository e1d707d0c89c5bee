"""Which heads' and MLPs' outputs changed most between base and tuned model on the same prompts.

A head's output is its slice of the attention output projection, ``z[:, :, h] @ W_O[h]`` (what the head
writes, before any post-norm); an MLP's is ``hook_mlp_out``. The change is ‖tuned − base‖ per token, averaged
over real tokens (the first, the attention sink, left out) and prompts, and divided by the base output's
mean norm for ``rel``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


def _outputs(model: HookedModel, ids: torch.Tensor, mask: torch.Tensor | None) -> tuple[list, list]:
    n = model.cfg.n_layers
    names = [f"blocks.{l}.attn.hook_z" for l in range(n)] + [f"blocks.{l}.hook_mlp_out" for l in range(n)]
    with torch.no_grad():
        _, c = model.run_with_cache(ids, names=names, attention_mask=mask)
        heads = [torch.einsum("bphd,hdm->bphm", c["z", l].float(), model.W_O(l).float()) for l in range(n)]
        mlps = [c["mlp_out", l].float() for l in range(n)]
    return heads, mlps


def output_changes(
    base: HookedModel, tuned: HookedModel, prompts: Sequence[str], batch_size: int = 8
) -> dict[str, list]:
    """``head`` [layer][head] and ``mlp`` [layer] mean ‖Δ output‖, with ``head_rel`` / ``mlp_rel``."""
    n, H = tuned.cfg.n_layers, tuned.cfg.n_heads
    hd, hb = torch.zeros(n, H), torch.zeros(n, H)
    md, mb = torch.zeros(n), torch.zeros(n)
    count = 0
    for i in range(0, len(prompts), batch_size):
        t = tuned.tokenize(list(prompts[i : i + batch_size]))
        real = (
            torch.ones(t.ids.shape, dtype=torch.bool) if t.attention_mask is None else t.attention_mask.bool()
        )
        real = real.cpu().clone()
        if real.shape[1] > 1:
            real[:, 0] = False
        ht, mt = _outputs(tuned, t.ids, t.attention_mask)
        h0, m0 = _outputs(
            base,
            t.ids.to(base.device),
            None if t.attention_mask is None else t.attention_mask.to(base.device),
        )
        w = real.float()
        for l in range(n):
            hd[l] += ((ht[l].cpu() - h0[l].cpu()).norm(dim=-1) * w[..., None]).sum((0, 1))
            hb[l] += (h0[l].cpu().norm(dim=-1) * w[..., None]).sum((0, 1))
            md[l] += ((mt[l].cpu() - m0[l].cpu()).norm(dim=-1) * w).sum()
            mb[l] += (m0[l].cpu().norm(dim=-1) * w).sum()
        count += int(real.sum())
    count = max(count, 1)
    return {
        "head": (hd / count).tolist(),
        "head_rel": (hd / hb.clamp_min(1e-12)).tolist(),
        "mlp": (md / count).tolist(),
        "mlp_rel": (md / mb.clamp_min(1e-12)).tolist(),
    }
