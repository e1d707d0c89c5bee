"""The residual stream: per-layer norms, and direct logit attribution (DLA) of every head and MLP.

DLA freezes the final norm's scale at its value on the real residual stream, which makes the final norm a
linear map; every component's write then maps to a logit (difference) and the parts add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.analysis import figures
from neuroscope.analysis._util import token_id, tolist
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass
class ResidualNorms:
    str_tokens: list[str]
    labels: list[str]
    norms: list[list[float]]  # [layer][pos]
    last_token: list[float]  # [layer]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def figure(self):
        return figures.heatmap(
            self.norms,
            x=self.str_tokens,
            y=self.labels,
            diverging=False,
            title="residual stream L2 norm",
            xlabel="position",
            ylabel="layer",
        )


def residual_norms(model: HookedModel, prompt: str) -> ResidualNorms:
    names = model.resid_stream_names()
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt, names=names, stop_at_layer=None)
        stack, labels = cache.accumulated_resid(return_labels=True)
        norms = stack[:, 0].float().norm(dim=-1)
    return ResidualNorms(model.to_str_tokens(prompt), labels, tolist(norms), tolist(norms[:, -1]))


@dataclass
class DLAResult:
    answer: str
    wrong: str | None
    position: int
    labels: list[str]  # "embed", "L{l}H{h}", "L{l}.b_O", "L{l}.attn_out", "L{l}.mlp", "ln_final.bias", "b_U"
    contributions: list[float]
    head_map: (
        list[list[float]] | None
    )  # [layer][head]; None where heads are not additive (post-attention norm)
    mlp: list[float]  # [layer]
    total: float  # sum of all contributions
    actual: float  # the model's own (pre-softcap) logit (difference)
    rel_error: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        order = np.argsort(-np.abs(self.contributions))[:k]
        return [(self.labels[i], self.contributions[i]) for i in order]

    def figure(self):
        if self.head_map is not None:
            fig = figures.heatmap(
                self.head_map,
                title=f"direct logit attribution per head to {self.answer!r}"
                + (f" − {self.wrong!r}" if self.wrong else ""),
                xlabel="head",
                ylabel="layer",
            )
            return fig
        return figures.bars(self.labels, self.contributions, title="direct logit attribution")


def _heads_additive(model: HookedModel) -> bool:
    sites = model.adapter.sites
    return sites["hook_attn_out"].module == sites["attn.hook_z"].module.rsplit(".", 1)[0]


def direct_logit_attribution(
    model: HookedModel, prompt: str, answer: str | int, wrong: str | int | None = None, position: int = -1
) -> DLAResult:
    """Attribute the logit of ``answer`` (minus ``wrong``) at ``position`` to the embedding, heads and MLPs."""
    n = model.cfg.n_layers
    a = token_id(model, answer)
    w = token_id(model, wrong) if wrong is not None else None
    per_head = _heads_additive(model)
    names = [
        "hook_embed",
        "blocks.0.hook_resid_pre",
        model.final_resid_name,
        "ln_final.hook_normalized",
    ]
    names += [f"blocks.{l}.hook_{s}_out" for l in range(n) for s in ("attn", "mlp")]
    if "hook_pos_embed" in model.hook_names():
        names.append("hook_pos_embed")
    if per_head:
        names += [f"blocks.{l}.attn.hook_z" for l in range(n)]
    seq = model.to_tokens(prompt).shape[1]
    pos = position if position >= 0 else seq + position
    if not 0 <= pos < seq:
        raise InvalidConfigError(f"position {position} is outside the prompt's {seq} tokens")
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt, names=names)
        direction = model.W_U[:, a].float()
        if w is not None:
            direction = direction - model.W_U[:, w].float()
        parts, labels = [], []
        emb, emb_labels = cache.decompose_resid(layer=0, return_labels=True)  # embedding (+ positional)
        for e, lab in zip(emb, emb_labels, strict=False):
            parts.append(e[0, pos])
            labels.append(lab)
        head_map = []
        mlp = []
        for l in range(n):
            if per_head:
                heads = torch.einsum("hd,hdm->hm", cache["z", l][0, pos].float(), model.W_O(l).float())
                for h in range(model.cfg.n_heads):
                    parts.append(heads[h])
                    labels.append(f"L{l}H{h}")
                parts.append(
                    cache["attn_out", l][0, pos].float() - heads.sum(0)
                )  # = b_O (checked by the core's tests)
                labels.append(f"L{l}.b_O")
            else:
                parts.append(cache["attn_out", l][0, pos])
                labels.append(f"L{l}.attn_out")
            parts.append(cache["mlp_out", l][0, pos])
            labels.append(f"L{l}.mlp")
        stack = torch.stack([p.float() for p in parts])[:, None, None, :]  # [component, batch=1, pos=1, d]
        normed = cache.apply_ln_final(stack.to(model.dtype), pos_slice=pos)[:, 0, 0].float()
        contrib = (normed @ direction).tolist()
        norm = model._module(model.adapter.final_norm)
        bias = getattr(norm, "bias", None)
        if bias is not None:
            contrib.append(float(bias.float() @ direction))
            labels.append("ln_final.bias")
        if model.b_U is not None:
            b = model.b_U.float()
            contrib.append(float(b[a] - (b[w] if w is not None else 0.0)))
            labels.append("b_U")
        final = cache["ln_final.hook_normalized"][0, pos].float()
        actual = float(final @ direction) + (contrib[-1] if model.b_U is not None else 0.0)
    idx = {lab: i for i, lab in enumerate(labels)}
    if per_head:
        head_map = [[contrib[idx[f"L{l}H{h}"]] for h in range(model.cfg.n_heads)] for l in range(n)]
    mlp = [contrib[idx[f"L{l}.mlp"]] for l in range(n)]
    total = float(np.sum(contrib))
    rel = abs(total - actual) / max(abs(actual), 1e-8)
    dec = model.tokenizer.decode
    return DLAResult(
        dec([a]),
        dec([w]) if w is not None else None,
        pos,
        labels,
        contrib,
        head_map if per_head else None,
        mlp,
        total,
        actual,
        rel,
    )
