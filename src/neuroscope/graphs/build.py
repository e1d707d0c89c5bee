"""The breadth-first construction behind :func:`neuroscope.graphs.provenance.provenance`.

Per level (the block between stream indices ``j-1`` and ``j``) three batched steps: the children's
candidate parents (skip, every head × source position, the MLP) from the run's cache in closed form; the
kept MLP nodes' gradients (one batched backward through the frozen MLPs); the kept head nodes' gradients
(one batched backward through the frozen norm and value projection). Each child's candidates are ranked by
|weight| and cut at ``coverage`` (at most ``max_parents``); only gradients of the inputs are computed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.graphs import schema
from neuroscope.graphs.linear import block_parts, head_directions, mlp_gradients, value_gradients
from neuroscope.graphs.streams import Run, Stream

if TYPE_CHECKING:
    from neuroscope.graphs.provenance import ProvenanceConfig
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.suite import SAESuite

Ref = tuple  # what a candidate is: ("feat", j, f, s) | ("err", j, s) | ("tok", s) | ("head", h, s) | ("mlp",)


@dataclass
class _Candidates:
    """A child's candidate parents as weight segments; ``refs[i](k)`` names the k-th parent of segment i."""

    weights: list[torch.Tensor] = field(default_factory=list)
    refs: list[Any] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def add(self, w: torch.Tensor, ref: Any, path: str) -> None:
        self.weights.append(w.reshape(-1))
        self.refs.append(ref)
        self.paths.append(path)

    def add_stream(self, st: Stream, s: int, fw: torch.Tensor | None, xw: torch.Tensor, path: str) -> None:
        if st.is_tokens:
            self.add(xw.reshape(1), lambda k, _s=s: ("tok", _s), path)
            return
        assert fw is not None and st.idx is not None
        ids = st.idx[s]
        self.add(fw, lambda k, _s=s, _ids=ids, _j=st.index: ("feat", _j, int(_ids[k]), _s), path)
        self.add(xw.reshape(1), lambda k, _s=s, _j=st.index: ("err", _j, _s), path)

    def resolve(self, flat: int) -> tuple[Ref, str]:
        for w, ref, path in zip(self.weights, self.refs, self.paths, strict=True):
            if flat < w.numel():
                return ref(flat), path
            flat -= w.numel()
        raise IndexError(flat)


@dataclass
class _Child:
    """What completeness needs once the path parents are known."""

    total: float
    plain: float  # |weight| of feature/token parents and of path parents that were not expanded
    paths: list[tuple[str, float]]  # kept path parents: (id, |weight|)


class Builder:
    def __init__(
        self,
        model: HookedModel,
        suite: SAESuite,
        run: Run,
        str_tokens: list[str],
        cfg: ProvenanceConfig,
    ):
        self.model, self.suite, self.run, self.tok, self.cfg = model, suite, run, str_tokens, cfg
        self.kind = model.cfg.normalization
        self.n_rep = model.cfg.n_heads // model.cfg.n_kv_heads
        self.nodes: dict[str, schema.Node] = {}
        self.edges: dict[tuple[str, str], schema.Edge] = {}
        self.infl: dict[str, float] = defaultdict(float)
        self.feat: dict[str, tuple[int, int, int]] = {}  # feature node id -> (stream, latent, pos)
        self.children: dict[str, _Child] = {}
        self._labels: dict[tuple[int, int], list[str]] = {}

    # --- nodes ------------------------------------------------------------------------------------------
    def _top_tokens(self, layer: int, f: int) -> list[str]:
        if (layer, f) not in self._labels:
            store = self.suite.features(layer)
            self._labels[(layer, f)] = list(store.feature(f)["top_tokens"][:5]) if store is not None else []
        return self._labels[(layer, f)]

    def _feature(self, j: int, f: int, s: int) -> str:
        st = self.run.streams[j]
        assert st.layer is not None and st.idx is not None and st.vals is not None
        nid = f"F{st.layer}:{f}@{s}"
        if nid not in self.nodes:
            hit = (st.idx[s] == f).nonzero()
            act = float(st.vals[s, hit[0, 0]]) if hit.numel() else 0.0
            top = self._top_tokens(st.layer, f)
            self.nodes[nid] = schema.Node(
                id=nid,
                type="feature",
                band=float(j),
                label=f"L{st.layer} #{f}" + (f" {' '.join(repr(t) for t in top[:3])}" if top else ""),
                layer=st.layer,
                pos=s,
                value=st.pre_act(s, f),
                activation=act,
                feature=f,
                top_tokens=top,
                extra={"token": self.tok[s], "hook": self.suite.hook_name(st.layer), "expanded": False},
            )
            self.feat[nid] = (j, f, s)
        return nid

    def _ref_node(self, ref: Ref) -> str:
        if ref[0] == "feat":
            return self._feature(ref[1], ref[2], ref[3])
        if ref[0] == "tok":
            s = ref[1]
            nid = f"T@{s}"
            if nid not in self.nodes:
                self.nodes[nid] = schema.Node(
                    id=nid,
                    type="token",
                    band=0.0,
                    label=f"{self.tok[s]!r}@{s}",
                    pos=s,
                    extra={"token": self.tok[s]},
                )
            return nid
        j, s = ref[1], ref[2]
        layer = self.run.streams[j].layer
        nid = f"E{layer}@{s}"
        if nid not in self.nodes:
            st = self.run.streams[j]
            assert st.err is not None
            self.nodes[nid] = schema.Node(
                id=nid,
                type="error",
                band=float(j),
                label=f"error L{layer} @{self.tok[s]!r}",
                layer=layer,
                pos=s,
                value=float(st.err[s].norm()),
                extra={"token": self.tok[s], "relative_error": float(st.err[s].norm() / st.x[s].norm())},
            )
        return nid

    def add_root(self, j: int, f: int, p: int) -> str:
        nid = self._feature(j, f, p)
        self.infl[nid] = 1.0
        return nid

    # --- selection --------------------------------------------------------------------------------------
    def _select(self, child: str, cand: _Candidates, value: float) -> list[tuple[Ref, str, float]]:
        w = torch.cat(cand.weights).double()
        a = w.abs()
        total = float(a.sum())
        node = self.nodes[child]
        node.bias = value - float(w.sum())
        if total == 0:
            node.error_share, node.kept_share = 0.0, 0.0
            self.children[child] = _Child(0.0, 0.0, [])
            return []
        order = torch.argsort(a, descending=True)[: self.cfg.max_parents]
        cum = torch.cumsum(a[order], 0)
        n_keep = len(order) if self.cfg.coverage >= 1 else int((cum < self.cfg.coverage * total).sum()) + 1
        kept = []
        err = plain = 0.0
        for seg, ref_fn in zip(cand.weights, cand.refs, strict=True):
            if not seg.numel():
                continue
            mass = float(seg.double().abs().sum())
            if ref_fn(0)[0] == "err":
                err += mass
            else:
                plain += mass
        kept_mass = 0.0
        for k in order[:n_keep].tolist():
            if float(a[k]) == 0.0:
                break
            ref, path = cand.resolve(k)
            kept.append((ref, path, float(w[k])))
            kept_mass += float(a[k])
        node.error_share = err / total
        node.kept_share = kept_mass / total
        self.children[child] = _Child(total, plain, [])
        return kept

    def _link(self, parent: str, child: str, weight: float, path: str) -> None:
        self.edges[(parent, child)] = schema.Edge(parent, child, weight, path)
        total = self.children[child].total
        if total:
            self.infl[parent] += self.infl[child] * abs(weight) / total

    def _path_kept(self, child: str, pid: str, weight: float) -> None:
        c = self.children[child]
        c.plain -= abs(weight)
        c.paths.append((pid, abs(weight)))

    # --- one level --------------------------------------------------------------------------------------
    def _head_values(self, b: int, P: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """``[n, head, src]``: each head's contribution from each source position along ``G [n, head, d_head]``."""
        v = self.run.acts[f"blocks.{b}.attn.hook_v"].repeat_interleave(self.n_rep, dim=1)  # [S, H, dh]
        A = self.run.pattern_rows(b, P).permute(1, 0, 2)  # [n, H, S]
        return A * torch.einsum("she,nhe->nhs", v, G)

    def _scale(self, b: int, role: str, P: torch.Tensor) -> torch.Tensor | None:
        s = self.run.scales.get((b, role))
        return None if s is None else s[P]

    def _need(self, b: int, role: str, P: torch.Tensor) -> torch.Tensor:
        return self.run.scales[(b, role)][P]

    def expand(self, j: int, frontier: list[str]) -> list[str]:
        """Parents of the ``frontier`` features (stream ``j``) through block ``j-1``; returns the features at
        ``j-1`` to expand next."""
        b = j - 1
        run, model = self.run, self.model
        parts = block_parts(model, b)
        up = run.streams[j - 1]
        st = run.streams[j]
        assert st.W_enc is not None
        for nid in frontier:
            self.nodes[nid].extra["expanded"] = True
        P = torch.tensor([self.feat[c][2] for c in frontier])
        U = torch.stack([st.W_enc[:, self.feat[c][1]] for c in frontier])
        fw, xw, _ = up.parent_weights(P, U)
        G = head_directions(parts, U, self._scale(b, "attn_post", P), self.kind)
        HV = self._head_values(b, P, G)
        MV = (run.acts[f"blocks.{b}.hook_mlp_out"][P] * U).sum(-1)
        heads: list[tuple[str, int, int, int, torch.Tensor, float]] = []  # child, h, s, p, G row, value
        mlps: list[tuple[str, int, torch.Tensor, float]] = []  # child, p, direction, value
        for c, child in enumerate(frontier):
            p = int(P[c])
            cand = _Candidates()
            cand.add_stream(up, p, None if fw is None else fw[c], xw[c], "skip")
            cand.add(HV[c, :, : p + 1], lambda k, _p=p: ("head", k // (_p + 1), k % (_p + 1)), "attention")
            cand.add(MV[c].reshape(1), lambda k: ("mlp",), "mlp")
            for ref, path, w in self._select(child, cand, self.nodes[child].value or 0.0):
                if ref[0] == "head":
                    heads.append((child, ref[1], ref[2], p, G[c, ref[1]], w))
                elif ref[0] == "mlp":
                    mlps.append((child, p, U[c], w))
                else:
                    self._link(self._ref_node(ref), child, w, path)
        mlp_ids = []
        for child, p, d, w in mlps:
            nid = self._mlp_node(b, p, child, w)
            self._link(nid, child, w, "mlp")
            self._path_kept(child, nid, w)
            mlp_ids.append((nid, p, d))
        if mlps:
            heads += self._expand_mlps(b, parts, up, mlp_ids)
        self._expand_heads(b, parts, up, heads)
        self._completeness([m for m, _, _ in mlp_ids], frontier)
        return self._next_frontier(j - 1)

    def _mlp_node(self, b: int, p: int, child: str, w: float) -> str:
        nid = f"M{b}@{p}/{child}"
        self.nodes[nid] = schema.Node(
            id=nid,
            type="mlp",
            band=b + 0.7,
            label=f"MLP {b} @{self.tok[p]!r}",
            layer=b,
            pos=p,
            value=w,
            extra={"token": self.tok[p], "child": child},
        )
        return nid

    def _expand_mlps(
        self, b: int, parts: Any, up: Stream, mlps: list[tuple[str, int, torch.Tensor]]
    ) -> list[tuple[str, int, int, int, torch.Tensor, float]]:
        run = self.run
        P = torch.tensor([p for _, p, _ in mlps])
        D = torch.stack([d for _, _, d in mlps])
        seq = not parts.parallel
        x_in = run.acts[f"blocks.{b}.hook_resid_mid" if seq else f"blocks.{b}.hook_resid_pre"][P]
        vals, g = mlp_gradients(
            parts, x_in, D, self._need(b, "ln2", P), self._scale(b, "mlp_post", P), self.kind
        )
        fw, xw, _ = up.parent_weights(P, g)
        heads = []
        HV = G2 = None
        if seq:
            G2 = head_directions(parts, g, self._scale(b, "attn_post", P), self.kind)
            HV = self._head_values(b, P, G2)
        for r, (nid, p, _) in enumerate(mlps):
            node = self.nodes[nid]
            node.extra["linear_total"] = float((g[r] * x_in[r]).sum())
            node.extra["nonlinear_remainder"] = float(vals[r]) - node.extra["linear_total"]
            cand = _Candidates()
            cand.add_stream(up, p, None if fw is None else fw[r], xw[r], "mlp-input")
            if HV is not None:
                cand.add(
                    HV[r, :, : p + 1], lambda k, _p=p: ("head", k // (_p + 1), k % (_p + 1)), "attention"
                )
            for ref, path, w in self._select(nid, cand, float(vals[r])):
                if ref[0] == "head":
                    assert G2 is not None
                    heads.append((nid, ref[1], ref[2], p, G2[r, ref[1]], w))
                else:
                    self._link(self._ref_node(ref), nid, w, path)
        return heads

    def _expand_heads(
        self, b: int, parts: Any, up: Stream, heads: list[tuple[str, int, int, int, torch.Tensor, float]]
    ) -> None:
        if not heads:
            return
        S = torch.tensor([s for _, _, s, _, _, _ in heads])
        H = torch.tensor([h for _, h, _, _, _, _ in heads])
        Q = torch.tensor([p for _, _, _, p, _, _ in heads])
        A = self.run.pattern_rows(b, Q)  # [head, n, key]: row i is head node i's query position
        at = A[H, torch.arange(len(heads)), S]
        cot = at[:, None] * torch.stack([g for *_, g, _ in heads])
        r = value_gradients(parts, up.x[S], cot, H // self.n_rep, self._need(b, "ln1", S), self.kind)
        fw, xw, _ = up.parent_weights(S, r)
        for i, (child, h, s, p, _, w) in enumerate(heads):
            nid = f"H{b}.{h}:{s}>{p}/{child}"
            self.nodes[nid] = schema.Node(
                id=nid,
                type="head",
                band=b + 0.4,
                label=f"L{b}H{h} {self.tok[s]!r}→{self.tok[p]!r}",
                layer=b,
                pos=p,
                head=h,
                source_pos=s,
                value=w,
                extra={
                    "source_token": self.tok[s],
                    "token": self.tok[p],
                    "pattern": float(at[i]),
                    "child": child,
                },
            )
            self._link(nid, child, w, "attention")
            self._path_kept(child, nid, w)
            cand = _Candidates()
            cand.add_stream(up, s, None if fw is None else fw[i], xw[i], "value")
            for ref, path, wq in self._select(nid, cand, w):
                self._link(self._ref_node(ref), nid, wq, path)

    def _completeness(self, mlp_nodes: list[str], frontier: list[str]) -> None:
        """c(n) = Σ_q |w_q| c(q) / Σ_q |w_q|: c = 0 for errors, 1 for features and tokens; expanded path parents
        (heads, MLPs) contribute their own completeness, so error reached through them counts."""

        def comp(nid: str) -> float:
            c = self.children[nid]
            if c.total == 0:
                return 1.0
            s = c.plain
            for pid, w in c.paths:
                pc = self.nodes[pid].completeness
                s += w * (1.0 if pc is None else pc)
            return s / c.total

        heads = [n for n, nd in self.nodes.items() if nd.type == "head" and nd.completeness is None]
        for nid in heads:
            self.nodes[nid].completeness = comp(nid)
        for nid in mlp_nodes:
            self.nodes[nid].completeness = comp(nid)
        for nid in frontier:
            self.nodes[nid].completeness = comp(nid)

    def _next_frontier(self, j: int) -> list[str]:
        if j == 0:
            return []
        cands = [(self.infl[n], n) for n, (jj, _, _) in self.feat.items() if jj == j and self.infl[n] > 0]
        cands.sort(reverse=True)
        total = sum(i for i, _ in cands)
        out: list[str] = []
        cum = 0.0
        for i, n in cands:
            if len(out) >= self.cfg.max_expand or (out and cum >= self.cfg.coverage * total):
                break
            out.append(n)
            cum += i
        return out

    # --- identity folding -------------------------------------------------------------------------------
    def fold_identity(self) -> None:
        """Fold skip edges between features whose decoder directions agree (cosine ≥ ``identity_cos``): the
        parent's own parents attach to the child with the path product ``w(q→g) · w(g→c) / value(g)``; the
        parent disappears when it fed nothing else. Lower layers first, so chains fold all the way."""
        skips = [
            e
            for e in self.edges.values()
            if e.path == "skip" and e.source in self.feat and e.target in self.feat
        ]
        skips.sort(key=lambda e: self.feat[e.source][0])
        for e in skips:
            if (e.source, e.target) not in self.edges:
                continue
            (jg, g, _), (jc, c, _) = self.feat[e.source], self.feat[e.target]
            dg, dc = self.run.streams[jg].W_dec, self.run.streams[jc].W_dec
            assert dg is not None and dc is not None
            cos = float(torch.nn.functional.cosine_similarity(dg[g], dc[c], dim=0))
            vg = self.nodes[e.source].value or 0.0
            if cos < self.cfg.identity_cos or abs(vg) < 1e-12:
                continue
            del self.edges[(e.source, e.target)]
            child = self.nodes[e.target]
            child.extra.setdefault("persists_from", []).append(
                {
                    "id": e.source,
                    "label": self.nodes[e.source].label,
                    "weight": e.weight,
                    "cosine": round(cos, 4),
                }
            )
            ratio = e.weight / vg
            for (src, tgt), inner in list(self.edges.items()):
                if tgt != e.source:
                    continue
                key = (src, e.target)
                w = inner.weight * ratio + (self.edges[key].weight if key in self.edges else 0.0)
                self.edges[key] = schema.Edge(src, e.target, w, f"{inner.path}+identity")
            if not any(s == e.source for s, _ in self.edges):
                for key in [k for k in self.edges if k[1] == e.source]:
                    del self.edges[key]
                del self.nodes[e.source]
                del self.feat[e.source]

    # --- output -----------------------------------------------------------------------------------------
    def finish(self) -> tuple[list[schema.Node], list[schema.Edge]]:
        # drop path nodes whose child was folded away, and anything no longer connected
        alive = set(self.nodes)
        edges = [e for e in self.edges.values() if e.source in alive and e.target in alive]
        for n in self.nodes.values():
            n.attribution = float(self.infl.get(n.id, 0.0))
        nodes = sorted(self.nodes.values(), key=lambda n: (n.band, n.pos if n.pos is not None else -1, n.id))
        return nodes, edges
