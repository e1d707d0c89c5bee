"""Adjacency rows of an attribution graph: one backward pass per batch of target nodes through the model
linearised around a recorded run, as circuit-tracer defines it.

Attention patterns and norm scales are frozen to the run's; each MLP's output is its transcoder's, whose
features and error are constant nodes, so the only gradient through an MLP is its transcoder's linear skip
term (circuit-tracer's "skip" around the nonlinearity). A target row starts from a vector injected where the
target reads the residual: a feature's encoder direction at its MLP's input (``ln2.hook_normalized``), a
logit's demeaned unembedding direction at the final norm's output. The backward is written out block by
block (not through autograd), so it touches only what a row can reach: rows are sorted by their target's
layer and a block runs on the rows above it; a batch of rows spans the positions up to its last target's.
Attention patterns are read one block at a time (kept for short prompts, else recomputed by running that
block alone): nothing quadratic is held beyond one block's pattern.

A source's column value is ``gradient at its output · its vector``: ``a_s · W_dec[s]`` for a feature,
the error vector for an error node, the token embedding for a token node.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.graphs.linear import block_parts

if TYPE_CHECKING:
    from neuroscope.transcoders.replacement import RecordedRun, ReplacementModel


def _norm_weight(module: torch.nn.Module, kind: str) -> torch.Tensor:
    w = module.weight.detach()  # type: ignore[union-attr]
    return w + 1.0 if kind == "rms_plus_one" else w


@dataclass
class _Block:
    W_O: torch.Tensor  # [head * d_head, d_model]
    W_V: torch.Tensor  # [kv_head * d_head, d_model]
    W_skip: torch.Tensor | None  # [d_model, d_model] (x @ W_skip)
    norms: dict[str, tuple[torch.Tensor, torch.Tensor]]  # role -> (weight, scale [pos, 1])
    n_kv: int


class Linearised:
    """The run's blocks as linear maps for the backward (weights in the model's dtype, on its device)."""

    def __init__(
        self, rm: ReplacementModel, run: RecordedRun, features: ActiveFeatures, pattern_mb: int = 64
    ):
        model = rm.model
        self.model, self.run, self.features = model, run, features
        self.kind = model.cfg.normalization
        self.parallel = model.cfg.parallel_attn_mlp
        self.n_layers, self.n_pos, self.d = model.cfg.n_layers, run.n_pos, model.cfg.d_model
        self.n_heads, self.d_head = model.cfg.n_heads, model.cfg.d_head
        self.blocks = [self._block(rm, l) for l in range(self.n_layers)]
        fn = model.hf_model.get_submodule(model.adapter.final_norm)
        self.final = (_norm_weight(fn, self.kind), run.final_scale)
        size = self.n_layers * self.n_heads * self.n_pos**2 * 4
        self.keep_patterns = bool(run.patterns) and size <= pattern_mb * 2**20
        self._pattern: tuple[int, int, torch.Tensor] | None = None

    def _block(self, rm: ReplacementModel, l: int) -> _Block:
        parts = block_parts(self.model, l)
        norms = {}
        for role, mod in parts.norms.items():
            if role in ("ln1", "ln2", "attn_post"):
                norms[role] = (_norm_weight(mod, self.kind), self.run.scales[(l, role)])
        site = parts.v_site
        with torch.no_grad():
            eye = torch.eye(self.d, device=self.model.device, dtype=self.model.dtype)
            v = site.read(site.module(eye)) - site.read(site.module(torch.zeros_like(eye[:1])))
        n_kv = v.shape[-2]
        tc = rm.transcoder(l)
        skip = tc.W_skip.detach() if tc is not None and tc.W_skip is not None else None
        return _Block(
            W_O=parts.W_O.detach().reshape(-1, self.d),
            W_V=v.reshape(self.d, -1).T.contiguous(),
            W_skip=skip,
            norms=norms,
            n_kv=n_kv,
        )

    # --- pieces of the backward -------------------------------------------------------------------------
    def norm_adj(self, weight: torch.Tensor, scale: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Adjoint of the frozen norm ``x -> C(x) * scale * w`` (C centres for LayerNorm): ``C(g * scale * w)``."""
        y = g * scale * weight
        return y - y.mean(-1, keepdim=True) if self.kind == "layer" else y

    def pattern(self, l: int, n: int) -> torch.Tensor:
        """Block ``l``'s pattern over the first ``n`` positions ``[head, n, n]`` (causal: exact on a prefix)."""
        if self.keep_patterns:
            return self.run.patterns[l][:, :n, :n]
        if self._pattern is not None and self._pattern[:2] == (l, n):
            return self._pattern[2]
        model, run = self.model, self.run
        out: dict[str, torch.Tensor] = {}
        resid = run.resid_pre[l, :n]

        def keep(x: torch.Tensor, hook: Any) -> None:
            out["p"] = x[0].detach()

        hooks = [
            (f"blocks.{l}.hook_resid_pre", lambda x, hook: resid[None].to(x.dtype)),
            (f"blocks.{l}.attn.hook_pattern", keep),
        ]
        with torch.no_grad():
            model.run_with_cache(
                run.tokens[None, :n], names=[], fwd_hooks=hooks, skip_below=l, stop_at_layer=l + 1
            )
        self._pattern = (l, n, out["p"])
        return out["p"]

    def attn_adj(self, l: int, g: torch.Tensor) -> torch.Tensor:
        """Gradient at the residual a block's attention reads, from ``g [rows, n, d]`` at its output."""
        b, (rows, n, _) = self.blocks[l], g.shape
        if "attn_post" in b.norms:
            w, s = b.norms["attn_post"]
            g = self.norm_adj(w, s[:n], g)
        z = (g @ b.W_O.T).view(rows, n, self.n_heads, self.d_head).transpose(1, 2)  # [rows, head, q, e]
        zk = torch.matmul(self.pattern(l, n).transpose(-1, -2).to(z.dtype), z)  # [rows, head, k, e]
        zk = zk.view(rows, b.n_kv, self.n_heads // b.n_kv, n, self.d_head).sum(2)
        h = zk.transpose(1, 2).reshape(rows, n, -1) @ b.W_V
        w, s = b.norms["ln1"]
        return self.norm_adj(w, s[:n], h)

    def skip_adj(self, l: int, g: torch.Tensor) -> torch.Tensor | None:
        b = self.blocks[l]
        if b.W_skip is None:
            return None
        w, s = b.norms["ln2"]
        return self.norm_adj(w, s[: g.shape[1]], g @ b.W_skip.T)

    def inject_feature(self, l: int, pos: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        w, s = self.blocks[l].norms["ln2"]
        return self.norm_adj(w, s[pos], enc)

    def inject_logit(self, pos: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        w, s = self.final
        return self.norm_adj(w, s[pos], vec)


@dataclass
class ActiveFeatures:
    """The active transcoder features of a run, sorted by (layer, position, feature), with what the graph
    needs of each: activation, encoder direction (read lazily) and decoder rows arranged per position."""

    layer: torch.Tensor  # [n] int64
    pos: torch.Tensor
    feature: torch.Tensor
    value: torch.Tensor  # [n] activation
    errors: torch.Tensor  # [layer, pos, d_model]
    starts: torch.Tensor  # [n_layers + 1] first index of each layer
    counts: torch.Tensor  # [n_layers, n_pos + 1]: features of layer l at positions < p (cumulative)

    @property
    def n(self) -> int:
        return int(self.layer.shape[0])


class DecoderBank:
    """Scaled decoder rows ``a_s · W_dec[s]`` of one layer laid out ``[pos, slot, d_model]`` (zero-padded), so
    a batch of gradients reads every feature of the layer in one batched matmul per position."""

    def __init__(self, rm: ReplacementModel, feats: ActiveFeatures, budget_mb: int = 256):
        self.rm, self.f = rm, feats
        n_pos = feats.counts.shape[1] - 1
        per = feats.counts[:, 1:] - feats.counts[:, :-1]  # [layer, pos]
        self.kmax = per.max(dim=1).values.clamp(min=1)
        size = int((self.kmax * n_pos).sum()) * rm.model.cfg.d_model * 4
        self.keep = size <= budget_mb * 2**20
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _layout(self, l: int) -> tuple[torch.Tensor, torch.Tensor]:
        if l in self._cache:
            return self._cache[l]
        f, tc = self.f, self.rm.transcoder(l)
        lo, hi = int(f.starts[l]), int(f.starts[l + 1])
        n_pos, k = f.counts.shape[1] - 1, int(self.kmax[l])
        pos = f.pos[lo:hi]
        slot = torch.arange(hi - lo, device=pos.device) - f.counts[l, pos]
        flat = pos * k + slot  # increasing: features are sorted by (position, feature)
        d = self.rm.model.cfg.d_model
        dec = torch.zeros(n_pos * k, d, dtype=self.rm.model.dtype, device=pos.device)
        if tc is not None and hi > lo:
            dec[flat] = tc.W_dec.detach()[f.feature[lo:hi]] * f.value[lo:hi, None].to(dec.dtype)
        out = (dec.view(n_pos, k, d), flat)
        if self.keep:
            self._cache[l] = out
        return out

    def values(self, l: int, g: torch.Tensor) -> torch.Tensor:
        """``[rows, m]``: every feature of layer ``l`` at positions < n (``g [rows, n, d]``), in index order."""
        n = g.shape[1]
        m = int(self.f.counts[l, n])
        if m == 0:
            return g.new_zeros(g.shape[0], 0)
        dec, flat = self._layout(l)
        k = dec.shape[1]
        out = torch.bmm(g.transpose(0, 1), dec[:n].transpose(1, 2))  # [n, rows, k]
        return out.transpose(0, 1).reshape(g.shape[0], n * k)[:, flat[:m]]


@dataclass
class RowBlock:
    """Rows of one batch in CSR form over the full column space (features by active index, then errors
    ``n_active + layer * n_pos + pos``, then tokens)."""

    nodes: torch.Tensor  # [r] the rows' node ids (active index, or a logit node id)
    layers: torch.Tensor  # [r] target layer (n_layers for logits), non-increasing
    crow: torch.Tensor  # [r + 1] int64
    cols: torch.Tensor  # [nnz] int32
    vals: torch.Tensor  # [nnz] float32
    abs_sum: torch.Tensor  # [r] float32: sum of |row| (circuit-tracer's normaliser)


def compute_rows(
    lin: Linearised,
    bank: DecoderBank,
    nodes: torch.Tensor,
    layers: torch.Tensor,
    pos: torch.Tensor,
    vecs: torch.Tensor,
) -> RowBlock:
    """One backward for a batch of targets (``layers`` = n_layers for logit targets; ``vecs`` the injected
    directions). Rows come back sorted by target layer, highest first."""
    order = torch.argsort(layers, descending=True, stable=True)
    nodes, layers, pos, vecs = nodes[order], layers[order], pos[order], vecs[order]
    L, n_pos_all, d = lin.n_layers, lin.n_pos, lin.d
    rows, n = int(layers.shape[0]), int(pos.max()) + 1
    feats = lin.features
    dt = lin.model.dtype
    G = torch.zeros(rows, n, d, dtype=dt, device=vecs.device)
    above = [int((layers > j).sum()) for j in range(L + 1)]  # rows whose target is above block j
    top = layers == L
    if top.any():
        idx = top.nonzero().squeeze(1)
        G[idx, pos[idx]] = lin.inject_logit(pos[idx], vecs[idx].to(dt))
    feat_cols: list[torch.Tensor] = []
    err_cols: list[torch.Tensor] = []
    for j in reversed(range(L)):
        a = above[j]
        g = G[:a]
        feat_cols.append(bank.values(j, g) if a else G.new_zeros(0, 0))
        err_cols.append(torch.einsum("rpd,pd->rp", g, feats.errors[j, :n].to(dt)) if a else G.new_zeros(0, n))
        here = (layers == j).nonzero().squeeze(1)
        if lin.parallel:
            delta = lin.attn_adj(j, g) if a else None
            skip = lin.skip_adj(j, g) if a else None
            if delta is not None:
                g += delta if skip is None else delta + skip
        else:
            skip = lin.skip_adj(j, g) if a else None
            if skip is not None:
                g += skip
        if here.numel():
            G[here, pos[here]] = lin.inject_feature(j, pos[here], vecs[here].to(dt))
        if not lin.parallel:
            a2 = above[j] + int(here.numel())
            g = G[:a2]
            if a2:
                g += lin.attn_adj(j, g)
    tok = torch.einsum("rpd,pd->rp", G, lin.run.embed[:n].to(dt))
    return _assemble(lin, nodes, layers, above, feat_cols[::-1], err_cols[::-1], tok, n, n_pos_all)


def _assemble(
    lin: Linearised,
    nodes: torch.Tensor,
    layers: torch.Tensor,
    above: list[int],
    feat_cols: list[torch.Tensor],
    err_cols: list[torch.Tensor],
    tok: torch.Tensor,
    n: int,
    n_pos_all: int,
) -> RowBlock:
    """Dense per-block values -> CSR over the global columns (row-major nonzeros are already sorted)."""
    rows, L = tok.shape[0], lin.n_layers
    feats = lin.features
    blocks, colmap = [], []
    dev = tok.device
    for j in range(L):
        m = feat_cols[j].shape[1]
        if m:
            blk = tok.new_zeros(rows, m)
            blk[: above[j]] = feat_cols[j]
            blocks.append(blk)
            lo = int(feats.starts[j])
            # features of layer j at positions < n: the first m of the layer (sorted by position)
            colmap.append(torch.arange(lo, lo + m, device=dev))
    err = tok.new_zeros(rows, L, n)
    for j in range(L):
        err[: above[j], j] = err_cols[j]
    blocks += [err.view(rows, L * n), tok]
    base = feats.n
    el = torch.arange(L, device=dev)[:, None] * n_pos_all + torch.arange(n, device=dev)[None]
    colmap += [base + el.reshape(-1), base + L * n_pos_all + torch.arange(n, device=dev)]
    dense = torch.cat(blocks, 1).float()
    cmap = torch.cat(colmap)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = dense.to_sparse_csr()
    cols = cmap[csr.col_indices()].to(torch.int32)
    return RowBlock(
        nodes=nodes,
        layers=layers,
        crow=csr.crow_indices(),
        cols=cols,
        vals=csr.values(),
        abs_sum=dense.abs().sum(1),
    )
