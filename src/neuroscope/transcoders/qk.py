"""QK attribution: why a head attends where it does, in terms of the graph's nodes on both sides.

A head's pre-softmax score at (query ``q``, key ``k``) is ``scale · q_vec · k_vec`` with ``q_vec`` an affine
function of the residual stream at ``q`` once the norms' scales are frozen at their values in the run (the
block's input norm, and Qwen 3 / Gemma 3's per-head ``q_norm`` / ``k_norm``), and the rotary embedding is a
fixed rotation at each position. The residual at each side is a sum of node contributions (token and position
embeddings, every earlier layer's attention output, each active transcoder feature's decoder output, the
transcoder's bias and skip term, its error), so the score is a bilinear form over (query node, key node)
pairs plus one constant row/column (the norm's and projection's biases). The pairs sum to the score exactly;
the tests check that against ``attn.hook_attn_scores`` on every adapter's tiny model.

Follows what circuit-tracer users ask in decoderesearch/circuit-tracer#53 (PR #114 computes the same
bilinear split for a head, per feature pair); here it works for any adapter, GQA and partial rotary included.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, PromptTooLongError
from neuroscope.graphs.linear import block_parts, frozen_norm, norm_scale

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.transcoders.model import TranscoderSet


@dataclass(frozen=True)
class ResidualNode:
    """One additive part of the residual stream at one position."""

    id: str
    kind: str  # token | pos_embed | attn | feature | bias | error | mlp
    pos: int
    layer: int | None = None
    feature: int | None = None
    activation: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


PREFIX = {"feature": "f", "error": "e", "token": "t", "pos_embed": "p", "attn": "a", "bias": "b", "mlp": "m"}


def node_id(kind: str, pos: int, layer: int | None = None, feature: int | None = None) -> str:
    """The attribution graph's ids (``f_L_P_F``, ``e_L_P``, ``t_P``), extended to the residual's other parts:
    ``a_L_P`` (attention output), ``b_L_P`` (transcoder bias + skip), ``m_L_P`` (an MLP without a
    transcoder), ``p_P`` (learned position embedding)."""
    parts = [PREFIX[kind]] + [str(x) for x in (layer, pos, feature) if x is not None]
    return "_".join(parts)


@dataclass
class ResidualParts:
    """The residual stream entering a layer at one position, as node contributions."""

    nodes: list[ResidualNode]
    vecs: torch.Tensor  # [n, d_model]: each node's own write to the residual stream
    entry: list[int]  # per node: the first MLP whose input contains it (layer index; the target layer: none)
    skips: dict[int, torch.Tensor]  # layer -> that skip transcoder's skip term (routed to upstream nodes)
    bias_index: dict[int, int]  # layer -> index of its transcoder's bias node


@torch.no_grad()
def residual_parts(
    model: HookedModel, transcoders: TranscoderSet, cache: Any, layer: int, pos: int
) -> ResidualParts:
    """The residual stream entering ``layer`` at ``pos``: ``vecs`` plus every skip term sum to
    ``blocks.{layer}.hook_resid_pre``. An MLP without a transcoder is one ``mlp`` node; a skip transcoder's
    skip term is not a node (it is linear in the MLP's input, so QK attribution credits it to the nodes
    upstream, as the attribution graph routes it)."""
    nodes: list[ResidualNode] = [ResidualNode(node_id("token", pos), "token", pos)]
    vecs = [cache["hook_embed"][0, pos]]
    entry = [0]
    if "hook_pos_embed" in model.sites:
        nodes.append(ResidualNode(node_id("pos_embed", pos), "pos_embed", pos))
        vecs.append(cache["hook_pos_embed"][0, pos])
        entry.append(0)
    skips: dict[int, torch.Tensor] = {}
    bias_index: dict[int, int] = {}
    parallel = model.cfg.parallel_attn_mlp
    for l in range(layer):
        nodes.append(ResidualNode(node_id("attn", pos, l), "attn", pos, l))
        vecs.append(cache[f"blocks.{l}.hook_attn_out"][0, pos])
        entry.append(l + 1 if parallel else l)  # a parallel block's MLP does not read its attention
        out = cache[f"blocks.{l}.hook_mlp_out"][0, pos]
        if l not in transcoders.transcoders:
            nodes.append(ResidualNode(node_id("mlp", pos, l), "mlp", pos, l))
            vecs.append(out)
            entry.append(l + 1)
            continue
        tc = transcoders[l]
        x = cache[f"blocks.{l}.ln2.hook_normalized"][0, pos].to(tc.W_enc.dtype)
        acts = tc.encode(x)
        for f in acts.nonzero().flatten().tolist():
            nodes.append(ResidualNode(node_id("feature", pos, l, f), "feature", pos, l, f, float(acts[f])))
            vecs.append(acts[f] * tc.W_dec[f])
        bias_index[l] = len(nodes)
        nodes.append(ResidualNode(node_id("bias", pos, l), "bias", pos, l))
        vecs.append(tc.b_dec)
        nodes.append(ResidualNode(node_id("error", pos, l), "error", pos, l))
        vecs.append(out.to(tc.b_dec.dtype) - tc(x))
        entry += [l + 1] * (len(nodes) - len(entry))
        if tc.W_skip is not None:
            skips[l] = tc.skip(x).float()
    dtype = torch.float32
    return ResidualParts(nodes, torch.stack([v.to(dtype) for v in vecs]), entry, skips, bias_index)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Hugging Face's rotary embedding (``rotate_half`` convention) on the first ``cos.shape[-1]`` dims."""
    r = cos.shape[-1]
    xr, rest = x[..., :r], x[..., r:]
    half = torch.cat([-xr[..., r // 2 :], xr[..., : r // 2]], -1)
    return torch.cat([xr * cos + half * sin, rest], -1)


def _attn_module(model: HookedModel, layer: int) -> nn.Module:
    return model.layer_module(layer, model.adapter.sites["attn.hook_z"].module.rsplit(".", 1)[0])


def _side_norm(attn: nn.Module, side: str) -> nn.Module | None:
    for name in (f"{side}_norm", f"{side}_layernorm"):
        mod = getattr(attn, name, None)
        if isinstance(mod, nn.Module):
            return mod
    return None


@dataclass
class QKAttribution:
    layer: int
    head: int
    kv_head: int
    query_pos: int
    key_pos: int
    tokens: list[str]
    score: float  # the model's pre-softmax score (before any soft-cap), from its own forward
    pair_sum: float  # the sum of every pair below: equals ``score`` up to rounding
    scale: float
    softcap: float | None
    pattern: float  # the attention weight the head puts on the key
    query_nodes: list[ResidualNode]
    key_nodes: list[ResidualNode]
    pairs: torch.Tensor = field(repr=False)  # [n_query + 1, n_key + 1]; last row/column: the constant part
    top: int = 20

    @property
    def query_totals(self) -> torch.Tensor:
        return self.pairs.sum(1)

    @property
    def key_totals(self) -> torch.Tensor:
        return self.pairs.sum(0)

    def top_pairs(self, k: int | None = None) -> list[dict[str, Any]]:
        k = k or self.top
        ids_q = [n.id for n in self.query_nodes] + ["c_q"]
        ids_k = [n.id for n in self.key_nodes] + ["c_k"]
        flat = self.pairs.flatten()
        idx = flat.abs().topk(min(k, flat.numel())).indices.tolist()
        nk = self.pairs.shape[1]
        return [{"query": ids_q[i // nk], "key": ids_k[i % nk], "value": float(flat[i])} for i in idx]

    def _side(self, side: str, k: int) -> list[dict[str, Any]]:
        nodes, totals = (
            (self.query_nodes, self.query_totals) if side == "q" else (self.key_nodes, self.key_totals)
        )
        rows = [{**n.to_dict(), "total": float(t)} for n, t in zip(nodes, totals[:-1].tolist(), strict=True)]
        rows.append({"id": f"c_{side}", "kind": "const", "total": float(totals[-1])})
        return sorted(rows, key=lambda r: -abs(r["total"]))[:k]

    def figure(self, k: int = 12):
        """Heatmap of the pairs among each side's ``k`` largest nodes (by ``|total|``)."""
        from neuroscope.analysis import figures

        rows = self.query_totals.abs().argsort(descending=True)[:k]
        cols = self.key_totals.abs().argsort(descending=True)[:k]
        ids_q = [n.id for n in self.query_nodes] + ["c_q"]
        ids_k = [n.id for n in self.key_nodes] + ["c_k"]
        q_tok, k_tok = self.tokens[self.query_pos], self.tokens[self.key_pos]
        return figures.heatmap(
            self.pairs[rows][:, cols].tolist(),
            x=[ids_k[i] for i in cols.tolist()],
            y=[ids_q[i] for i in rows.tolist()],
            title=f"L{self.layer}H{self.head}: query {self.query_pos} {q_tok!r} -> key {self.key_pos} {k_tok!r}, "
            f"score {self.score:.3f}",
            xlabel="key-side node",
            ylabel="query-side node",
        )

    def to_dict(self, k: int | None = None) -> dict[str, Any]:
        k = k or self.top
        return {
            "layer": self.layer,
            "head": self.head,
            "kv_head": self.kv_head,
            "query_pos": self.query_pos,
            "key_pos": self.key_pos,
            "tokens": self.tokens,
            "score": self.score,
            "pair_sum": self.pair_sum,
            "scale": self.scale,
            "softcap": self.softcap,
            "pattern": self.pattern,
            "n_query_nodes": len(self.query_nodes) + 1,
            "n_key_nodes": len(self.key_nodes) + 1,
            "query_nodes": self._side("q", k),
            "key_nodes": self._side("k", k),
            "top_pairs": self.top_pairs(k),
        }


def _position(value: int, n: int, what: str) -> int:
    p = value + n if value < 0 else value
    if not 0 <= p < n:
        raise IndexOutOfRangeError(what, value, n)
    return p


@torch.no_grad()
def qk_attribution(
    model: HookedModel,
    transcoders: TranscoderSet,
    prompt: str | torch.Tensor,
    layer: int,
    head: int,
    query_pos: int = -1,
    key_pos: int = 0,
    top: int = 20,
    max_tokens: int | None = None,
) -> QKAttribution:
    """Decompose head ``(layer, head)``'s score at ``(query_pos, key_pos)`` (negative = from the end) into
    pairs of residual-stream nodes. Features come from ``transcoders`` at the layers below ``layer``."""
    model.check_layer(layer)
    model.check_head(layer, head)
    if top < 1:
        raise InvalidConfigError(f"top must be at least 1; got {top}.")
    from neuroscope.transcoders.attribution import prepare_tokens

    # text as attribution graphs tokenize it (a special token first), so positions match a graph's
    ids = prepare_tokens(model, prompt).to(model.device)
    n = int(ids.shape[0])
    limit = min(max_tokens or model.cfg.n_ctx, model.cfg.n_ctx)
    if n > limit:
        raise PromptTooLongError(n, limit)
    qp, kp = _position(query_pos, n, "query position"), _position(key_pos, n, "key position")
    if kp > qp:
        raise InvalidConfigError(
            f"key position {kp} is after query position {qp}: a causal head attends only to earlier positions."
        )
    attn = _attn_module(model, layer)
    rope: dict[str, Any] = {}
    owner = threading.get_ident()

    def grab(_m: nn.Module, _args: tuple, kwargs: dict) -> None:
        if threading.get_ident() == owner and kwargs.get("position_embeddings") is not None:
            rope["cos_sin"] = kwargs["position_embeddings"]

    names = ["hook_embed", f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.attn.hook_attn_scores"]
    names += [f"blocks.{layer}.attn.hook_pattern"]
    if "hook_pos_embed" in model.sites:
        names.append("hook_pos_embed")
    for l in range(layer):
        names += [f"blocks.{l}.{h}" for h in ("hook_attn_out", "hook_mlp_out", "ln2.hook_normalized")]
        names.append(f"blocks.{l}.hook_resid_pre")
    handle = attn.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        _, cache = model.run_with_cache(ids[None], names=names, stop_at_layer=layer + 1)
    finally:
        handle.remove()
    cfg = model.cfg
    kv_head = head // (cfg.n_heads // cfg.n_kv_heads)
    sides = {}
    for side, pos, h in (("q", qp, head), ("k", kp, kv_head)):
        parts = residual_parts(model, transcoders, cache, layer, pos)
        eye = torch.eye(cfg.d_model, dtype=parts.vecs.dtype, device=parts.vecs.device)
        read = _head_vectors(model, attn, layer, side, h, eye, cache, pos, rope.get("cos_sin"))
        sides[side] = (parts.nodes, _routed(model, transcoders, cache, layer, pos, parts, read))
    scale = float(getattr(attn, "scaling", cfg.d_head**-0.5))
    pairs = scale * sides["q"][1] @ sides["k"][1].T
    actual = float(cache[f"blocks.{layer}.attn.hook_attn_scores"][0, head, qp, kp])
    softcap = getattr(model.hf_model.config, "attn_logit_softcapping", None)
    if softcap:  # the hook sees the capped score; report the bilinear form's value (invert the cap)
        actual = float(torch.atanh(torch.tensor(actual / softcap, dtype=torch.float64)) * softcap)
    return QKAttribution(
        layer=layer,
        head=head,
        kv_head=kv_head,
        query_pos=qp,
        key_pos=kp,
        tokens=[model.tokenizer.decode([int(i)]) for i in ids],
        score=actual,
        pair_sum=float(pairs.double().sum()),
        scale=scale,
        softcap=float(softcap) if softcap else None,
        pattern=float(cache[f"blocks.{layer}.attn.hook_pattern"][0, head, qp, kp]),
        query_nodes=sides["q"][0],
        key_nodes=sides["k"][0],
        pairs=pairs,
        top=top,
    )


def _routed(
    model: HookedModel,
    transcoders: TranscoderSet,
    cache: Any,
    layer: int,
    pos: int,
    parts: ResidualParts,
    read: torch.Tensor,
) -> torch.Tensor:
    """Each node's query (key) vector ``[n + 1, d_head]`` (last row: the constant part). ``read [d_model + 1,
    d_head]`` is the head's affine read of the residual at ``layer``; a node entering before MLP ``m`` is
    read through ``R_m = (I + N_m W_skip) R_{m+1}`` (``N_m``: MLP ``m``'s input norm, frozen), so the skip
    terms are credited to the nodes they are linear in, and their constants to the transcoder's bias node."""
    kind = model.cfg.normalization
    readout = {layer: read[:-1]}
    consts: dict[int, torch.Tensor] = {}
    for m in reversed(range(layer)):
        readout[m] = readout[m + 1]
        if m not in parts.skips:
            continue
        ln2 = block_parts(model, m).norms["ln2"]
        x_in = cache[f"blocks.{m}.hook_resid_pre"][0, pos]
        if not model.cfg.parallel_attn_mlp:
            x_in = x_in + cache[f"blocks.{m}.hook_attn_out"][0, pos]
        s = norm_scale(ln2, x_in[None], kind)
        eye = torch.eye(x_in.shape[-1], dtype=x_in.dtype, device=x_in.device)
        zero = torch.zeros_like(x_in)[None]
        w_skip = transcoders[m].W_skip
        assert w_skip is not None
        n_lin = (frozen_norm(ln2, eye, s, kind) - frozen_norm(ln2, zero, s, kind)).float()
        readout[m] = readout[m + 1] + n_lin @ (w_skip.float() @ readout[m + 1])
        consts[m] = (frozen_norm(ln2, zero, s, kind).float() @ w_skip.float())[0] @ readout[m + 1]
    out = torch.empty(len(parts.nodes) + 1, read.shape[1], dtype=read.dtype, device=read.device)
    entry = torch.tensor(parts.entry, device=read.device)
    for e in entry.unique().tolist():
        idx = (entry == e).nonzero().flatten()
        out[idx] = parts.vecs[idx].to(read.dtype) @ readout[e]
    for m, c in consts.items():
        out[parts.bias_index[m]] += c
    out[-1] = read[-1]
    return out


def _head_vectors(
    model: HookedModel,
    attn: nn.Module,
    layer: int,
    side: str,
    head: int,
    parts: torch.Tensor,
    cache: Any,
    pos: int,
    cos_sin: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """The head's query (or key) vector from each node ``[n + 1, d_head]`` (last row: the constant part),
    as the model computes it at ``pos`` with every norm scale frozen."""
    kind = model.cfg.normalization
    ln1 = model.layer_module(layer, model.adapter.ln1)
    site = model.sites[f"blocks.{layer}.attn.hook_{side}"]
    resid = cache[f"blocks.{layer}.hook_resid_pre"][0, pos]
    dtype = resid.dtype
    scale = norm_scale(ln1, resid[None], kind)
    zero = torch.zeros(1, parts.shape[1], dtype=dtype, device=resid.device)
    const_in = frozen_norm(ln1, zero, scale, kind)
    lin = frozen_norm(ln1, parts.to(dtype), scale, kind) - const_in
    rows = torch.cat([lin, const_in, zero, frozen_norm(ln1, resid[None], scale, kind)])
    proj = site.read(site.module(rows))[:, head].float()  # [n + 3, d_head]
    out = torch.cat([proj[:-3] - proj[-2], proj[-3:-2]])  # linear parts, then the constant part
    norm = _side_norm(attn, side)
    if norm is not None:  # per-head RMS norm of the projection: frozen at the actual vector's scale
        s = norm_scale(norm, proj[-1:], kind)
        out = frozen_norm(norm, out.to(dtype), s.to(dtype), kind).float()
    if cos_sin is not None:
        cos, sin = (t[0, pos].float() for t in cos_sin)
        out = rotate(out, cos, sin)
    return out
