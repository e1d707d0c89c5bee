"""How the layer-0 previous-token head feeds the layer-1 induction head: composition scores and path ablation.

Composition scores (Elhage et al., 2021) compare weight matrices: K-composition of a source head's OV circuit
into a destination head's QK circuit is ``||W_QK W_OVᵀ||_F / (||W_QK||_F ||W_OV||_F)`` (row-vector convention,
``score = r_q W_QK r_kᵀ``). LayerNorm gains are folded into the reading weights and the writing side is
centred, as LayerNorm would centre it. Path ablation is the causal check: remove the source head's output from
only the residual stream the destination head reads its keys (or queries, or values) from, and re-measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from neuroscope.interventions import Hook
from neuroscope.train.metrics import attention_patterns, in_context_loss, scores_from_patterns


@dataclass(frozen=True)
class HeadWeights:
    """One GPT-2 block's per-head matrices, LayerNorm gain folded in: ``W_Q/W_K/W_V [head, d_model, d_head]``,
    ``W_O [head, d_head, d_model]``."""

    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor


def gpt2_head_weights(hf_model: Any, layer: int) -> HeadWeights:
    block = hf_model.transformer.h[layer]
    n_heads = hf_model.config.n_head
    d_model = hf_model.config.n_embd
    d_head = d_model // n_heads
    w = block.attn.c_attn.weight.detach().float()  # Conv1D: x @ w, [d_model, 3 * d_model]
    gain = block.ln_1.weight.detach().float()[:, None]

    def split(part: int) -> torch.Tensor:
        m = gain * w[:, part * d_model : (part + 1) * d_model]
        return m.reshape(d_model, n_heads, d_head).permute(1, 0, 2)

    W_O = block.attn.c_proj.weight.detach().float().reshape(n_heads, d_head, d_model)
    return HeadWeights(split(0), split(1), split(2), W_O)


def _centre(m: torch.Tensor) -> torch.Tensor:
    return m - m.mean(dim=-1, keepdim=True)


def _comp(a: torch.Tensor, b: torch.Tensor) -> float:
    denom = float(torch.linalg.matrix_norm(a) * torch.linalg.matrix_norm(b))
    if not denom > 0:  # a pruned head (weights ~0, its norms underflow): it composes with nothing
        return 0.0
    return float(torch.linalg.matrix_norm(a @ b)) / denom


def composition_scores(
    hf_model: Any, src_layer: int = 0, dst_layer: int = 1
) -> dict[str, Float[torch.Tensor, "src_head dst_head"]]:
    """Q-, K- and V-composition of every ``src_layer`` head into every ``dst_layer`` head."""
    src, dst = gpt2_head_weights(hf_model, src_layer), gpt2_head_weights(hf_model, dst_layer)
    ov = _centre(src.W_V @ src.W_O)  # [head, d_model, d_model]
    qk = dst.W_Q @ dst.W_K.transpose(1, 2)
    ov_dst = dst.W_V @ dst.W_O
    n_src, n_dst = ov.shape[0], qk.shape[0]
    out = {k: torch.zeros(n_src, n_dst) for k in ("q", "k", "v")}
    for i in range(n_src):
        for j in range(n_dst):
            out["q"][i, j] = _comp(ov[i], qk[j])
            out["k"][i, j] = _comp(qk[j], ov[i].T)
            out["v"][i, j] = _comp(ov[i], ov_dst[j])
    return out


def random_composition_baseline(d_model: int, d_head: int, samples: int = 50, seed: int = 0) -> float:
    """Mean composition score of random Gaussian low-rank circuits of the same shapes (the chance level)."""
    gen = torch.Generator().manual_seed(seed)

    def low_rank() -> torch.Tensor:
        return torch.randn(d_model, d_head, generator=gen) @ torch.randn(d_head, d_model, generator=gen)

    return sum(_comp(low_rank(), low_rank()) for _ in range(samples)) / samples


@torch.no_grad()
def path_ablation(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    seq_len: int,
    src: tuple[int, int],
    dst: tuple[int, int],
    site: str = "k",
) -> dict[str, Any]:
    """Remove head ``src``'s output from the input of ``dst``'s ``site`` (q, k or v) only; re-measure ``dst``.

    The replacement ``site`` vector is recomputed from ``ln_1(resid_pre - src_out)`` with ``dst``'s own weights,
    so every other path (including ``src`` → the logits directly, and ``src`` → the other sites) is untouched.
    """
    s_layer, s_head = src
    d_layer, d_head = dst
    hf = model.hf_model
    names = [f"blocks.{s_layer}.attn.hook_z", f"blocks.{d_layer}.hook_resid_pre"]
    _, cache = model.run_with_cache(tokens, names=names)
    z = cache[names[0]][:, :, s_head]  # [batch, pos, d_head]
    W_O = hf.transformer.h[s_layer].attn.c_proj.weight.reshape(model.cfg.n_heads, model.cfg.d_head, -1)[
        s_head
    ]
    resid = cache[names[1]] - z @ W_O
    block = hf.transformer.h[d_layer]
    part = "qkv".index(site)
    qkv = block.attn.c_attn(block.ln_1(resid))  # [batch, pos, 3 * d_model]
    d_model, dh = model.cfg.d_model, model.cfg.d_head
    new = qkv[..., part * d_model : (part + 1) * d_model].reshape(*qkv.shape[:2], model.cfg.n_heads, dh)[
        :, :, d_head
    ]

    def replace(act: torch.Tensor, hook: Any) -> torch.Tensor:
        act = act.clone()
        act[:, :, d_head] = new.to(act.dtype)
        return act

    intervention = Hook(f"blocks.{d_layer}.attn.hook_{site}", replace)
    _, cache = model.run_with_cache(
        tokens, names=lambda n: n.endswith("hook_pattern"), interventions=[intervention]
    )
    patterns = torch.stack([cache["pattern", layer] for layer in range(model.cfg.n_layers)]).float()
    ind, _ = scores_from_patterns(patterns, tokens)
    loss = in_context_loss(model, tokens, seq_len, [intervention])
    return {"site": site, "induction_score": float(ind[d_layer, d_head]), **loss.to_dict()}


def composition_evidence(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    seq_len: int,
    prev_head: tuple[int, int],
    ind_head: tuple[int, int],
) -> dict[str, Any]:
    """Composition scores, the chance baseline, and path ablations of prev_head → ind_head through q, k and v."""
    comp = composition_scores(model.hf_model, prev_head[0], ind_head[0])
    base_ind, _ = scores_from_patterns(attention_patterns(model, tokens), tokens)
    baseline_loss = in_context_loss(model, tokens, seq_len)
    return {
        "source_head": list(prev_head),
        "destination_head": list(ind_head),
        "composition": {k: v.tolist() for k, v in comp.items()},
        "pair": {k: float(v[prev_head[1], ind_head[1]]) for k, v in comp.items()},
        "random_baseline": random_composition_baseline(model.cfg.d_model, model.cfg.d_head),
        "unpatched": {"induction_score": float(base_ind[ind_head]), **baseline_loss.to_dict()},
        "path_ablation": [
            path_ablation(model, tokens, seq_len, prev_head, ind_head, s) for s in ("q", "k", "v")
        ],
    }
