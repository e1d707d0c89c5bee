"""The residual stream: per-layer norms, and direct logit attribution (DLA) of every head, neuron and MLP.

DLA freezes the final norm's scale at its value on this run's residual stream, which makes the final norm a
linear map; every component's write then maps to a logit (difference) and the parts add up exactly. Where a
sublayer's output passes through a norm of its own before it joins the residual stream (Gemma 2/3's
``post_attention_layernorm`` / ``post_feedforward_layernorm``), that norm's scale is frozen the same way, at its
value on this run, so heads still add up to their layer's attention term and neurons to its MLP term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.analysis import figures
from neuroscope.analysis._util import token_id, tolist
from neuroscope.analysis.run import Run, as_run, model_of

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


def residual_norms(model: HookedModel | Run, prompt: str | None = None) -> ResidualNorms:
    """L2 norm of the residual stream before each layer and after the last, at every position."""
    run = as_run(model, prompt, model_of(model).resid_stream_names())
    with torch.no_grad():
        stack, labels = run.cache.accumulated_resid(return_labels=True)
        norms = stack[:, 0].float().norm(dim=-1)
    return ResidualNorms(run.str_tokens, labels, tolist(norms), tolist(norms[:, -1]))


@dataclass
class DLAResult:
    """Direct logit attribution at one position. ``contributions`` (over ``labels``) sum to ``total``, which
    equals ``actual``, the model's own pre-softcap logit (difference), up to ``rel_error``.

    Per layer: ``attn[l]`` is the attention output's term, read from ``hook_attn_out``; ``head_map[l]`` its
    heads (``hook_z`` through ``W_O``) and ``attn_bias[l]`` the output bias (``b_O``), both through the frozen
    post-attention norm where there is one, so ``sum(head_map[l]) + attn_bias[l] == attn[l]``. Likewise
    ``sum(neuron_map[l]) + mlp_bias[l] == mlp[l]`` for the MLP neurons (``mlp.hook_post`` through ``W_out``).
    An intervention that replaces a sublayer's output after its heads or neurons (ablating ``hook_mlp_out``)
    breaks that layer's identity: its heads or neurons then no longer describe what was written.
    """

    answer: str
    wrong: str | None
    position: int
    # "embed", ["pos_embed"], "L{l}H{h}", "L{l}.b_O" (the attention term minus its heads: the output bias,
    # through the post-norm where there is one), "L{l}.mlp", ["ln_final.bias"], ["b_U"]
    labels: list[str]
    contributions: list[float]
    head_map: list[list[float]]  # [layer][head]
    mlp: list[float]  # [layer]
    total: float  # sum of all contributions
    actual: float  # the model's own (pre-softcap) logit (difference)
    rel_error: float
    attn: list[float] = field(default_factory=list)  # [layer]
    attn_bias: list[float] = field(default_factory=list)  # [layer]
    neuron_map: list[list[float]] = field(default_factory=list, repr=False)  # [layer][neuron]
    mlp_bias: list[float] = field(default_factory=list)  # [layer]
    answer_id: int = -1
    wrong_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the [layer][neuron] map (tens of thousands of numbers on a real model): its per-layer
        sums and the 50 largest neurons instead."""
        d = {k: v for k, v in self.__dict__.items() if k != "neuron_map"}
        d["neuron_sums"] = [float(np.sum(row)) for row in self.neuron_map]
        d["top_neurons"] = [list(t) for t in self.top_neurons(50)]
        return d

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        order = np.argsort(-np.abs(self.contributions))[:k]
        return [(self.labels[i], self.contributions[i]) for i in order]

    def top_neurons(self, k: int = 10, skip_layers: Sequence[int] = ()) -> list[tuple[int, int, float]]:
        """The ``k`` neurons with the largest direct effect (by magnitude), outside ``skip_layers``:
        (layer, neuron, value)."""
        arr = np.asarray(self.neuron_map, dtype=np.float64)
        mag = np.abs(arr)
        mag[list(skip_layers)] = -1.0
        order = np.argsort(-mag, axis=None, kind="stable")[: min(k, int((mag >= 0).sum()))]
        return [(int(i) // arr.shape[1], int(i) % arr.shape[1], float(arr.flat[i])) for i in order]

    def additivity_error(self) -> dict[str, float]:
        """Largest relative gap, over layers, between a sublayer's term and the sum of its parts (heads +
        bias, neurons + bias); relative to the larger of the term and the sum of the parts' magnitudes."""

        def gap(total: float, parts: list[float], bias: float) -> float:
            scale = max(abs(total), sum(abs(p) for p in parts) + abs(bias), 1e-12)
            return abs(sum(parts) + bias - total) / scale

        n = len(self.attn)
        return {
            "heads": max(gap(self.attn[l], self.head_map[l], self.attn_bias[l]) for l in range(n)),
            "neurons": max(gap(self.mlp[l], self.neuron_map[l], self.mlp_bias[l]) for l in range(n)),
            "components": abs(self.total - self.actual) / max(abs(self.actual), 1e-8),
        }

    def figure(self):
        return figures.heatmap(
            self.head_map,
            title=f"direct logit attribution per head to {self.answer!r}"
            + (f" − {self.wrong!r}" if self.wrong else ""),
            xlabel="head",
            ylabel="layer",
        )


def _post_norm(model: HookedModel, layer: int, sublayer: str) -> torch.nn.Module | None:
    """The norm between a sublayer and the residual stream (Gemma 2/3), or None where its output joins as is.

    The adapter says so: ``hook_attn_out`` (``hook_mlp_out``) sits on another module than the one that holds
    the heads' (neurons') output projection."""
    sites = model.adapter.sites
    inner = sites["attn.hook_z" if sublayer == "attn" else "mlp.hook_post"].module.rsplit(".", 1)[0]
    outer = sites["hook_attn_out" if sublayer == "attn" else "hook_mlp_out"].module
    return None if outer == inner else model.layer_module(layer, outer)


def _through_post_norm(
    model: HookedModel, norm: torch.nn.Module | None, parts: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``parts`` [n, d] and ``bias`` [d] (which sum to the sublayer's output) mapped through ``norm`` with its
    scale frozen at its value on that output; a LayerNorm's own bias joins ``bias``."""
    if norm is None:
        return parts, bias
    out = parts.sum(0) + bias
    mapped = model.norm_linear(torch.cat([parts, bias[None]]), out, norm=norm).float()
    norm_bias = getattr(norm, "bias", None)
    extra = norm_bias.float() if isinstance(norm_bias, torch.Tensor) else 0.0
    return mapped[:-1], mapped[-1] + extra


def dla_names(model: HookedModel) -> list[str]:
    """The hooks direct logit attribution reads."""
    n = model.cfg.n_layers
    names = ["hook_embed", "blocks.0.hook_resid_pre", model.final_resid_name, "ln_final.hook_normalized"]
    if "hook_pos_embed" in model.hook_names():
        names.append("hook_pos_embed")
    for l in range(n):
        names += [
            f"blocks.{l}.{h}" for h in ("hook_attn_out", "hook_mlp_out", "attn.hook_z", "mlp.hook_post")
        ]
    return names


def direct_logit_attribution(
    model: HookedModel | Run,
    prompt: str | None = None,
    answer: str | int | None = None,
    wrong: str | int | None = None,
    position: int = -1,
) -> DLAResult:
    """Attribute the logit of ``answer`` (minus ``wrong``) at ``position`` to the embedding, every head (and
    its layer's output bias), every MLP neuron, and the final norm's and unembedding's biases.

    ``model`` may be a :class:`~neuroscope.analysis.run.Run` (then no ``prompt``); ``answer=None`` attributes
    the run's own top prediction at ``position``.
    """
    run = as_run(model, prompt, dla_names(model_of(model)))
    m, cache = run.model, run.cache
    n = m.cfg.n_layers
    pos = run.position(position)
    a = run.answer_id(answer, pos)
    w = token_id(m, wrong) if wrong is not None else None
    with torch.no_grad():
        direction = m.W_U[:, a].float()
        if w is not None:
            direction = direction - m.W_U[:, w].float()
        final = cache[m.final_resid_name][0, pos]

        def logit(parts: torch.Tensor) -> torch.Tensor:  # [..., d] writes -> [...] logit (difference)
            return m.norm_linear(parts.to(m.dtype), final).float() @ direction

        emb, labels = cache.decompose_resid(layer=0, return_labels=True)  # embedding (+ positional)
        contrib = logit(emb[:, 0, pos]).tolist()
        attn, attn_bias, head_map, mlp, mlp_bias, neuron_map = [], [], [], [], [], []
        for l in range(n):
            z = cache["z", l][0, pos].float()  # [head, d_head]
            heads = torch.einsum("hd,hdm->hm", z, m.W_O(l).float())
            heads, b_o = _through_post_norm(m, _post_norm(m, l, "attn"), heads, m.b_O(l).float())
            post = cache["post", l][0, pos].float()  # [d_mlp]
            neurons = post[:, None] * m.W_out(l).float()  # [d_mlp, d_model]
            neurons, b_out = _through_post_norm(m, _post_norm(m, l, "mlp"), neurons, _b_out(m, l))
            terms = logit(
                torch.stack([cache["attn_out", l][0, pos], cache["mlp_out", l][0, pos], b_o, b_out])
            )
            head_terms = logit(heads)
            attn.append(float(terms[0]))
            mlp.append(float(terms[1]))
            attn_bias.append(float(terms[2]))
            mlp_bias.append(float(terms[3]))
            head_map.append(head_terms.tolist())
            neuron_map.append(logit(neurons).tolist())
            contrib += head_map[-1] + [attn[-1] - float(head_terms.sum()), mlp[-1]]
            labels += [f"L{l}H{h}" for h in range(m.cfg.n_heads)] + [f"L{l}.b_O", f"L{l}.mlp"]
        bias = getattr(m._module(m.adapter.final_norm), "bias", None)
        if bias is not None:
            contrib.append(float(bias.float() @ direction))
            labels.append("ln_final.bias")
        b_u = 0.0
        if m.b_U is not None:
            b = m.b_U.float()
            b_u = float(b[a] - (b[w] if w is not None else 0.0))
            contrib.append(b_u)
            labels.append("b_U")
        actual = float(cache["ln_final.hook_normalized"][0, pos].float() @ direction) + b_u
    total = float(np.sum(contrib))
    dec = m.tokenizer.decode
    return DLAResult(
        answer=dec([a]),
        wrong=dec([w]) if w is not None else None,
        position=pos,
        labels=labels,
        contributions=contrib,
        head_map=head_map,
        mlp=mlp,
        total=total,
        actual=actual,
        rel_error=abs(total - actual) / max(abs(actual), 1e-8),
        attn=attn,
        attn_bias=attn_bias,
        neuron_map=neuron_map,
        mlp_bias=mlp_bias,
        answer_id=a,
        wrong_id=w,
    )


def _b_out(model: HookedModel, layer: int) -> torch.Tensor:
    """The MLP output projection's bias (zeros where it has none)."""
    proj = model.layer_module(layer, model.adapter.sites["mlp.hook_post"].module)
    bias = getattr(proj, "bias", None)
    return (
        bias.float()
        if isinstance(bias, torch.Tensor)
        else torch.zeros(model.cfg.d_model, device=model.device)
    )
