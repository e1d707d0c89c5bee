"""Attribution graphs over a transcoder replacement model, with circuit-tracer's (0.5) definitions.

Nodes, in circuit-tracer's order: the active transcoder features at (layer, position) (the first position,
the prepended special token, left out), one error node per (layer, position), one token node per position,
and the top logits at the last position (until their probabilities reach ``desired_logit_prob``, at most
``max_n_logits``; each one's direction is its unembedding column minus the mean column). Edges are direct
linear effects with attention patterns and norm scales frozen (:mod:`neuroscope.transcoders.rows`): row =
target, column = source. When more features are active than ``max_feature_nodes``, the features to expand are
chosen as circuit-tracer chooses them: logit rows first, then repeatedly the ``update_interval × batch_size``
unvisited features of highest influence on the rows computed so far.

The adjacency is sparse throughout (CSR, only the rows of features and logits, only nonzero entries): memory
grows with the prompt (columns) and ``max_feature_nodes`` (rows), never as nodes × nodes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from neuroscope.errors import EmptyPromptError, GraphPromptTooLongError, InvalidConfigError
from neuroscope.transcoders.graph import AttributionGraph
from neuroscope.transcoders.prune import Adjacency, check_threshold
from neuroscope.transcoders.rows import ActiveFeatures, DecoderBank, Linearised, RowBlock, compute_rows

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.transcoders.replacement import RecordedRun, ReplacementModel


@dataclass(frozen=True)
class AttributionConfig:
    max_n_logits: int = 10
    desired_logit_prob: float = 0.95
    max_feature_nodes: int | None = 7500  # None: every active feature
    batch_size: int = 512  # circuit-tracer's batch: with update_interval, how often the ranking is refreshed
    update_interval: int = 4
    max_tokens: int = 512  # longer prompts are refused (memory grows with the prompt)
    chunk_mb: int = 256  # working memory of one backward over a batch of rows
    node_threshold: float = 0.8
    edge_threshold: float = 0.98

    def __post_init__(self) -> None:
        check_threshold("node_threshold", self.node_threshold)
        check_threshold("edge_threshold", self.edge_threshold)
        check_threshold("desired_logit_prob", self.desired_logit_prob)
        for name in ("max_n_logits", "batch_size", "update_interval", "max_tokens", "chunk_mb"):
            if int(getattr(self, name)) < 1:
                raise InvalidConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_feature_nodes is not None and self.max_feature_nodes < 0:
            raise InvalidConfigError(f"max_feature_nodes must be >= 0, got {self.max_feature_nodes}.")

    def to_dict(self) -> dict:
        return asdict(self)


def prepare_tokens(model: HookedModel, prompt: str | torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Token ids ``[pos]`` with a special token first, as circuit-tracer's ``ensure_tokenized``: text is
    tokenised without special tokens, then the first truthy id of (bos, pad, eos, all special ids) is
    prepended unless the first token is special already (its features and error are left out of the graph)."""
    tok = model.tokenizer
    if isinstance(prompt, str):
        if not prompt:
            raise EmptyPromptError()
        ids = torch.tensor(tok(prompt, add_special_tokens=False)["input_ids"], dtype=torch.long)
    else:
        ids = (
            torch.as_tensor(list(prompt) if not isinstance(prompt, torch.Tensor) else prompt).long().flatten()
        )
    if ids.numel() == 0:
        raise EmptyPromptError()
    special = list(getattr(tok, "all_special_ids", []) or [])
    if int(ids[0]) not in special:
        first = next(filter(None, [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, *special]), None)
        if first is not None:
            ids = torch.cat([torch.tensor([int(first)]), ids])
    return ids.to(model.device)


def salient_logits(
    model: HookedModel, logits: torch.Tensor, max_n: int, desired_prob: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token ids, probabilities, demeaned unembedding directions ``[k, d_model]``) of the top logits."""
    probs = torch.softmax(logits.float(), -1)
    top_p, top_idx = torch.topk(probs, min(max_n, probs.shape[0]))
    cutoff = int(torch.searchsorted(torch.cumsum(top_p, 0), torch.tensor(desired_prob))) + 1
    idx = top_idx[:cutoff]
    W_U = model.W_U  # [d_model, d_vocab]
    vecs = (W_U[:, idx] - W_U.mean(dim=-1, keepdim=True)).T
    return idx, probs[idx], vecs


def active_features(rm: ReplacementModel, run: RecordedRun) -> ActiveFeatures:
    """Active features of every layer (position 0 left out), sorted by (layer, position, feature), and each
    layer's error vectors ``real − transcoder`` (zero at position 0; the whole MLP output without a transcoder)."""
    n_layers, n_pos = rm.model.cfg.n_layers, run.n_pos
    layer, pos, feat, val, errs = [], [], [], [], []
    counts = torch.zeros(n_layers, n_pos + 1, dtype=torch.long)
    with torch.no_grad():
        for l in range(n_layers):
            tc = rm.transcoder(l)
            if tc is None:
                errs.append(run.mlp_out[l].clone())
            else:
                acts = tc.encode(run.mlp_in[l])
                acts[0] = 0
                p, f = acts.nonzero(as_tuple=True)
                layer.append(torch.full_like(p, l))
                pos.append(p)
                feat.append(f)
                val.append(acts[p, f])
                counts[l, 1:] = torch.bincount(p, minlength=n_pos).cumsum(0).cpu()
                errs.append(run.mlp_out[l] - tc(run.mlp_in[l]))
            errs[-1][0] = 0
    cat = lambda xs: torch.cat(xs) if xs else torch.zeros(0, dtype=torch.long)  # noqa: E731
    sizes = counts[:, -1]
    starts = torch.zeros(n_layers + 1, dtype=torch.long)
    starts[1:] = sizes.cumsum(0)
    return ActiveFeatures(
        layer=cat(layer),
        pos=cat(pos),
        feature=cat(feat),
        value=torch.cat(val) if val else torch.zeros(0),
        errors=torch.stack(errs),
        starts=starts,
        counts=counts,
    )


class _Builder:
    """The rows computed so far and how to compute more."""

    def __init__(self, rm: ReplacementModel, run: RecordedRun, cfg: AttributionConfig):
        self.rm, self.run, self.cfg = rm, run, cfg
        self.feats = active_features(rm, run)
        self.lin = Linearised(rm, run, self.feats)
        self.bank = DecoderBank(rm, self.feats)
        self.blocks: list[RowBlock] = []
        self.n_layers = rm.model.cfg.n_layers

    def rows_per_chunk(self, n_pos: int) -> int:
        # the gradients and their temporaries, and the row's dense values before they are made sparse
        n_cols = self.feats.n + (self.n_layers + 1) * n_pos
        per_row = n_pos * self.rm.model.cfg.d_model * 4 * 6 + n_cols * 20
        return max(8, min(self.cfg.batch_size, self.cfg.chunk_mb * 2**20 // per_row))

    def compute(
        self, nodes: torch.Tensor, layers: torch.Tensor, pos: torch.Tensor, vecs: torch.Tensor
    ) -> None:
        """Rows for these targets, in chunks of nearby positions (a chunk spans its last target's prefix)."""
        order = torch.argsort(pos * (self.n_layers + 1) + (self.n_layers - layers), stable=True)
        i, total = 0, int(order.numel())
        while i < total:
            last = min(i + self.cfg.batch_size, total) - 1  # positions ascend: the widest this chunk can be
            sel = order[i : i + self.rows_per_chunk(int(pos[order[last]]) + 1)]
            self.blocks.append(
                compute_rows(self.lin, self.bank, nodes[sel], layers[sel], pos[sel], vecs[sel])
            )
            i += int(sel.numel())

    def encoder_vecs(self, idx: torch.Tensor) -> torch.Tensor:
        f = self.feats
        out = torch.empty(idx.numel(), self.rm.model.cfg.d_model, dtype=self.rm.model.dtype)
        for l in f.layer[idx].unique().tolist():
            m = f.layer[idx] == l
            out[m] = self.rm.transcoder(l).W_enc.detach()[:, f.feature[idx[m]]].T  # type: ignore[union-attr]
        return out

    def partial_influence(self, n_nodes: int, logit_nodes: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """circuit-tracer's ``compute_partial_influences`` over the rows computed so far, in one pass over the
        entries: rows taken in descending target layer, so each row's influence is complete when it is read."""
        w0 = torch.zeros(n_nodes)
        w0[logit_nodes] = probs.float()
        segments = []
        for blk in self.blocks:
            for j in blk.layers.unique().tolist():
                idx = (blk.layers == j).nonzero().squeeze(1)
                segments.append((j, blk, int(idx[0]), int(idx[-1]) + 1))
        segments.sort(key=lambda s: -s[0])
        infl = torch.zeros(n_nodes)
        for _, blk, a, b in segments:
            nodes = blk.nodes[a:b]
            w = (w0[nodes] + infl[nodes]) / blk.abs_sum[a:b].clamp(min=1e-8)
            lo, hi = int(blk.crow[a]), int(blk.crow[b])
            if hi > lo and bool(w.any()):
                per = torch.repeat_interleave(w, blk.crow[a + 1 : b + 1] - blk.crow[a:b])
                infl.index_add_(0, blk.cols[lo:hi].long(), blk.vals[lo:hi].abs() * per)
        return infl


def attribute(
    rm: ReplacementModel, prompt: str | torch.Tensor | Sequence[int], cfg: AttributionConfig | None = None
) -> AttributionGraph:
    """The attribution graph of ``prompt``'s next token (unpruned; prune with :meth:`AttributionGraph.prune`)."""
    cfg = cfg or AttributionConfig()
    model = rm.model
    t0 = time.perf_counter()
    tokens = prepare_tokens(model, prompt)
    limit = min(cfg.max_tokens, model.cfg.n_ctx)
    if tokens.numel() > limit:
        raise GraphPromptTooLongError(int(tokens.numel()), limit)
    n_pos, n_layers = int(tokens.numel()), model.cfg.n_layers
    keep = n_layers * model.cfg.n_heads * n_pos**2 * 4 <= 64 * 2**20
    run = rm.record(tokens, keep_patterns=keep)
    b = _Builder(rm, run, cfg)
    f = b.feats
    t_setup = time.perf_counter()
    logit_ids, probs, logit_vecs = salient_logits(model, run.logits, cfg.max_n_logits, cfg.desired_logit_prob)
    n_logits = int(logit_ids.numel())
    logit_offset = f.n + (n_layers + 1) * n_pos
    logit_nodes = torch.arange(logit_offset, logit_offset + n_logits)
    b.compute(
        logit_nodes,
        torch.full((n_logits,), n_layers),
        torch.full((n_logits,), n_pos - 1),
        logit_vecs.to(model.dtype),
    )
    max_feats = f.n if cfg.max_feature_nodes is None else min(cfg.max_feature_nodes, f.n)
    visited = torch.zeros(f.n, dtype=torch.bool)
    n_visited = 0
    while n_visited < max_feats:
        if max_feats == f.n:
            pending = torch.arange(f.n)
        else:
            infl = b.partial_influence(logit_offset + n_logits, logit_nodes, probs)
            rank = torch.argsort(infl[: f.n], descending=True)
            queue = min(cfg.update_interval * cfg.batch_size, max_feats - n_visited)
            pending = rank[~visited[rank]][:queue]
        b.compute(pending, f.layer[pending], f.pos[pending], b.encoder_vecs(pending))
        visited[pending] = True
        n_visited += int(pending.numel())
    t_rows = time.perf_counter()
    selected = visited.nonzero().squeeze(1)
    adj = _final_adjacency(b, selected, n_layers, n_pos, n_logits)
    t_end = time.perf_counter()
    return AttributionGraph(
        model_name=model.cfg.name,
        tokens=tokens.cpu(),
        token_strs=[model.tokenizer.decode([int(t)]) for t in tokens],
        n_layers=n_layers,
        active_features=torch.stack([f.layer, f.pos, f.feature], 1),
        activation_values=f.value.float().cpu(),
        selected_features=selected,
        logit_tokens=logit_ids.cpu(),
        logit_probabilities=probs.cpu(),
        logit_strs=[model.tokenizer.decode([int(t)]) for t in logit_ids],
        adjacency=adj,
        config=cfg,
        timings={"setup_s": t_setup - t0, "rows_s": t_rows - t_setup, "assemble_s": t_end - t_rows},
    )


def _final_adjacency(
    b: _Builder, selected: torch.Tensor, n_layers: int, n_pos: int, n_logits: int
) -> Adjacency:
    """The graph's ``[n, n]`` CSR: columns of unselected features dropped, rows in node order (each row's
    entries stay sorted by column: blocks store them so and the column map is increasing)."""
    f = b.feats
    n_sel = int(selected.numel())
    n_other = (n_layers + 1) * n_pos
    n = n_sel + n_other + n_logits
    colmap = torch.full((f.n + n_other,), -1, dtype=torch.long)
    colmap[selected] = torch.arange(n_sel)
    colmap[f.n :] = torch.arange(n_sel, n_sel + n_other)
    rowmap = torch.full((f.n + n_other + n_logits,), -1, dtype=torch.long)
    rowmap[selected] = torch.arange(n_sel)
    rowmap[f.n + n_other :] = torch.arange(n - n_logits, n)
    cols_parts, vals_parts, rows, starts, lens = [], [], [], [], []
    base = 0
    for blk in b.blocks:
        r = int(blk.nodes.numel())
        entry_rows = torch.repeat_interleave(torch.arange(r), blk.crow[1:] - blk.crow[:-1])
        cols = colmap[blk.cols.long()]
        keep = cols >= 0
        length = torch.bincount(entry_rows[keep], minlength=r)
        cols_parts.append(cols[keep].to(torch.int32))
        vals_parts.append(blk.vals[keep])
        starts.append(base + length.cumsum(0) - length)
        lens.append(length)
        rows.append(rowmap[blk.nodes])
        base += int(length.sum())
    crow = torch.zeros(n + 1, dtype=torch.long)
    if rows:
        row_ids, start, length = torch.cat(rows), torch.cat(starts), torch.cat(lens)
        order = torch.argsort(row_ids)
        start, length = start[order], length[order]
        counts = torch.zeros(n, dtype=torch.long)
        counts[row_ids[order]] = length
        crow[1:] = counts.cumsum(0)
        total = int(length.sum())
        offsets = torch.repeat_interleave(start - (length.cumsum(0) - length), length)
        gather = offsets + torch.arange(total)
        cols_out, vals_out = torch.cat(cols_parts)[gather], torch.cat(vals_parts)[gather]
    else:
        cols_out, vals_out = torch.zeros(0, dtype=torch.int32), torch.zeros(0)
    sel_layers = f.layer[selected]
    groups = [(n - n_logits, n)]
    for l in range(n_layers - 1, -1, -1):
        idx = (sel_layers == l).nonzero().squeeze(1)
        if idx.numel():
            groups.append((int(idx[0]), int(idx[-1]) + 1))
    return Adjacency(crow=crow, cols=cols_out, vals=vals_out, groups=groups)
