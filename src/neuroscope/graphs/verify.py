"""Independent checks of provenance graphs.

:func:`check_edges` — exactness: with attention patterns and norm scales frozen (forward hooks on the model's
own modules, not the closed forms the graph was built with), nudge an edge's parent along that edge's path
only and measure the child by a real forward; the central difference must equal the edge weight.

:func:`causal_check` — in the real model, nothing frozen: ablate a feature's top-5 parents from its graph
(subtract their decoder vectors from the residual) and compare the drop in its activation with ablating
5 random active features of the same layer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.graphs.linear import frozen_norms
from neuroscope.graphs.streams import Run, clean_run

if TYPE_CHECKING:
    from neuroscope.graphs.provenance import ProvenanceGraph
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.suite import SAESuite


@dataclass
class EdgeCheck:
    source: str
    target: str
    path: str
    weight: float
    measured: float
    rel_error: float


@dataclass
class EdgeCheckResult:
    checks: list[EdgeCheck]
    max_rel_error: float
    median_rel_error: float
    eps: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": len(self.checks)}


class _Frozen:
    """Forwards of one block with the run's patterns and norm scales, its input set to the clean residual
    plus per-row nudges, and the block's internals (z, mlp_out) optionally pinned or nudged."""

    def __init__(self, model: HookedModel, run: Run):
        self.model, self.run = model, run

    def forward(
        self,
        b: int,
        x: torch.Tensor,
        z_fn: Any = None,
        mlp_fn: Any = None,
        grad_mid: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Run block ``b`` on ``x [rows, pos, d]``; returns its resid_post, attn_out, mlp_out (and resid_mid)."""
        model, run = self.model, self.run
        rows = x.shape[0]
        out: dict[str, torch.Tensor] = {}
        pattern = run.pattern(b)[None].expand(rows, -1, -1, -1)

        def keep(name: str):
            def fn(t: torch.Tensor, hook: Any) -> None:
                out[name] = t

            return fn

        hooks: list[tuple[str, Any]] = [
            (f"blocks.{b}.hook_resid_pre", lambda t, hook: x),
            (f"blocks.{b}.attn.hook_pattern", lambda t, hook: pattern),
            (f"blocks.{b}.attn.hook_v", keep("v")),
        ]
        if z_fn is not None:
            hooks.append((f"blocks.{b}.attn.hook_z", lambda t, hook: z_fn(t, out)))
        if grad_mid and not model.cfg.parallel_attn_mlp:

            def leaf(t: torch.Tensor, hook: Any) -> torch.Tensor:
                out["resid_mid"] = t.detach().requires_grad_(True)
                return out["resid_mid"]

            hooks.append((f"blocks.{b}.hook_resid_mid", leaf))
        hooks += [
            (f"blocks.{b}.hook_attn_out", keep("attn_out")),
            (f"blocks.{b}.hook_mlp_out", mlp_fn if mlp_fn is not None else keep("mlp_out")),
            (f"blocks.{b}.hook_mlp_out", keep("mlp_out")),
            (f"blocks.{b}.hook_resid_post", keep("resid_post")),
        ]
        scales = {k: v[None] for k, v in run.scales.items() if k[0] == b}
        with torch.set_grad_enabled(grad_mid), frozen_norms(model, scales):
            model.run_with_cache(
                run.tokens[None].expand(rows, -1),
                names=[],
                fwd_hooks=hooks,
                skip_below=b,
                stop_at_layer=b + 1,
            )
        return out


def _node_vector(run: Run, node: Any) -> torch.Tensor:
    """The vector a feature, error or token node adds to the residual at its position."""
    st = run.streams[int(node.band)]
    s = node.pos
    if node.type == "token":
        return st.x[s]
    if node.type == "error":
        assert st.err is not None
        return st.err[s]
    assert st.idx is not None and st.vals is not None and st.W_dec is not None
    k = int((st.idx[s] == node.feature).nonzero()[0, 0])
    return st.vals[s, k] * st.W_dec[node.feature]


def _feature_readout(suite: SAESuite, run: Run, node: Any, model: HookedModel):
    st = run.streams[int(node.band)]
    assert st.W_enc is not None and st.b_dec is not None and st.b_enc is not None
    u, f, p = st.W_enc[:, node.feature], node.feature, node.pos
    b_dec, b_enc = st.b_dec, st.b_enc

    def read(out: dict[str, torch.Tensor]) -> torch.Tensor:
        return (out["resid_post"][:, p] - b_dec) @ u + b_enc[f]

    return read, u


# gradients are taken inside: callable from torch.inference_mode() (the server's model worker)
@torch.inference_mode(False)
def check_edges(
    model: HookedModel,
    suite: SAESuite,
    graph: ProvenanceGraph,
    n: int = 100,
    eps: float = 1e-4,
    seed: int = 0,
) -> EdgeCheckResult:
    """Nudge ``n`` random edges' parents by ``±eps`` × their own value along the edge's path, in a forward
    of the model with patterns and norm scales frozen, and compare the central difference of the child with
    the edge weight. Folded identity edges (path products) are left out. Use a float64 model for tight bars."""
    lo = graph.meta["lowest_stream"]
    top = graph.n_streams - 1
    tokens = torch.tensor(graph.meta["token_ids"], device=model.device)
    run = clean_run(model, tokens, lo, top, suite)
    frozen = _Frozen(model, run)
    nodes = {nd.id: nd for nd in graph.nodes}
    edges = [e for e in graph.edges if "identity" not in e.path]
    rng = random.Random(seed)
    sample = edges if len(edges) <= n else rng.sample(edges, n)
    signs = torch.tensor([1.0, -1.0], dtype=model.dtype)
    checks = []
    for e in sample:
        parent, child = nodes[e.source], nodes[e.target]
        measured = _measure(model, suite, run, frozen, nodes, parent, child, signs * eps)
        diff = float(measured[0] - measured[1]) / (2 * eps)
        rel = abs(diff - e.weight) / max(abs(e.weight), 1e-12)
        checks.append(EdgeCheck(e.source, e.target, e.path, e.weight, diff, rel))
    rels = [c.rel_error for c in checks] or [0.0]
    return EdgeCheckResult(checks, float(max(rels)), float(np.median(rels)), eps)


def _child_readout(model, suite, run, frozen, nodes, child):
    """(block, readout(out) -> [rows], which internals the path pins) for a child node."""
    if child.type == "feature":
        read, _ = _feature_readout(suite, run, child, model)
        return int(child.band) - 1, read
    grand = nodes[child.extra["child"]]
    b = child.layer
    if child.type == "mlp":
        _, u = _feature_readout(suite, run, grand, model)
        p = child.pos
        return b, lambda out: out["mlp_out"][:, p] @ u
    # a head node: its value is its contribution along its own child's direction at the query position
    p = child.pos
    if grand.type == "feature":
        _, d = _feature_readout(suite, run, grand, model)
    else:  # the head feeds an MLP node: the direction is that MLP's input gradient, taken by autograd here
        _, u = _feature_readout(suite, run, nodes[grand.extra["child"]], model)
        x = run.streams[b].x[None]
        out = frozen.forward(b, x, z_fn=lambda t, o: run.acts[f"blocks.{b}.attn.hook_z"][None], grad_mid=True)
        key = "resid_mid" if "resid_mid" in out else None
        if key is None:  # parallel blocks have no head -> MLP path
            raise AssertionError("head -> MLP edge in a parallel block")
        (g,) = torch.autograd.grad(out["mlp_out"][0, p] @ u, out[key])
        d = g[0, p].detach()
    return b, lambda out: out["attn_out"][:, p] @ d


def _measure(model, suite, run, frozen, nodes, parent, child, scale: torch.Tensor) -> torch.Tensor:
    b, read = _child_readout(model, suite, run, frozen, nodes, child)
    rows = scale.shape[0]
    x0 = run.streams[b].x
    z_clean = run.acts[f"blocks.{b}.attn.hook_z"]
    mlp_clean = run.acts[f"blocks.{b}.hook_mlp_out"]
    x = x0[None].repeat(rows, 1, 1)
    pin_z = lambda t, out: z_clean[None].expand_as(t).clone()  # noqa: E731
    pin_mlp = lambda t, hook: mlp_clean[None].expand_as(t).clone()  # noqa: E731
    z_fn: Any = pin_z
    mlp_fn: Any = pin_mlp if child.type == "feature" else None
    if parent.type in ("feature", "error", "token"):
        x[:, parent.pos] += scale[:, None] * _node_vector(run, parent)
        if child.type == "head":
            h, s, p = child.head, child.source_pos, child.pos
            n_rep = model.cfg.n_heads // model.cfg.n_kv_heads
            A = run.pattern_rows(b, [p])[h, 0, s]
            v_clean = run.acts[f"blocks.{b}.attn.hook_v"][s, h // n_rep]

            def z_fn(t, out, h=h, s=s, p=p, A=A, v_clean=v_clean):
                z = z_clean[None].expand_as(t).clone()
                z[:, p, h] += A * (out["v"][:, s, h // n_rep] - v_clean)
                return z

    elif parent.type == "head":
        h, s, p = parent.head, parent.source_pos, parent.pos
        n_rep = model.cfg.n_heads // model.cfg.n_kv_heads
        vec = run.pattern_rows(b, [p])[h, 0, s] * run.acts[f"blocks.{b}.attn.hook_v"][s, h // n_rep]

        def z_fn(t, out, h=h, p=p, vec=vec):
            z = z_clean[None].expand_as(t).clone()
            z[:, p, h] += scale[:, None] * vec
            return z

    elif parent.type == "mlp":
        p = parent.pos

        def mlp_fn(t, hook, p=p):
            m = mlp_clean[None].expand_as(t).clone()
            m[:, p] += scale[:, None] * mlp_clean[p]
            return m

    with torch.no_grad():
        out = frozen.forward(b, x, z_fn=z_fn, mlp_fn=mlp_fn)
        return read(out).detach()


# --- causal check in the real model ---------------------------------------------------------------------------
@dataclass
class CausalResult:
    targets: list[dict[str, Any]]
    median_drop_top: float
    median_drop_random: float
    ratio: float
    ratio_ci: tuple[float, float]
    frac_top_greater: float
    n_random: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def feature_parent_effects(graph: ProvenanceGraph) -> dict[str, float]:
    """Each upstream feature's total linear effect on the target in a depth-1 graph: the sum of its edge
    weights (a path node's value is its contribution to its one child, so every path ends at the target)."""
    top = graph.n_streams - 1
    out: dict[str, float] = {}
    for e in graph.edges:
        nd = graph.node(e.source)
        if nd.type == "feature" and int(nd.band) == top - 1:
            out[e.source] = out.get(e.source, 0.0) + e.weight
    return out


def _ablated_activations(
    model: HookedModel,
    suite: SAESuite,
    run: Run,
    layer: int,
    f: int,
    p: int,
    sets: list[list[tuple[int, int]]],
) -> torch.Tensor:
    """The target feature's activation (the SAE's own encoding, real model, nothing frozen) with each set of
    (latent, position) pairs of the layer below subtracted from the residual; one row per set."""
    top = suite.stream_index(layer)
    up = run.streams[top - 1]
    assert up.W_dec is not None and up.idx is not None and up.vals is not None
    x = up.x[None].repeat(len(sets), 1, 1)
    for r, pairs in enumerate(sets):
        for g, s in pairs:
            k = int((up.idx[s] == g).nonzero()[0, 0])
            x[r, s] -= up.vals[s, k] * up.W_dec[g]
    b = top - 1
    with torch.no_grad():
        _, cache = model.run_with_cache(
            run.tokens[None].expand(len(sets), -1),
            names=[f"blocks.{b}.hook_resid_post"],
            fwd_hooks=[(f"blocks.{b}.hook_resid_pre", lambda t, hook: x)],
            skip_below=b,
            stop_at_layer=b + 1,
        )
        sae = suite.sae(layer)
        z = sae.encode(cache[f"blocks.{b}.hook_resid_post"][:, p].float())
    return z[:, f]


# gradients are taken inside: callable from torch.inference_mode() (the server's model worker)
@torch.inference_mode(False)
def causal_check(
    model: HookedModel,
    suite: SAESuite,
    layer: int,
    targets: Sequence[tuple[str | torch.Tensor, int, int]],
    k: int = 5,
    n_random: int = 10,
    seed: int = 0,
    cfg: Any = None,
    skip_identity: float | None = None,
) -> CausalResult:
    """For each target (prompt, position, feature): ablate its top-``k`` parent features (largest positive
    total effect in its depth-1 provenance graph) vs ``n_random`` draws of ``k`` random active features of the
    same layer at positions up to the target's. Per target: the drop in activation for the top-``k`` set and
    the mean |change| over the random draws (absolute, so random sets that raise the activation count as
    much as ones that lower it: the comparison favours the random sets). Medians over targets, and a
    bootstrap interval of the ratio of the medians. ``skip_identity``: leave out parents whose decoder
    direction has at least this cosine with the target's (the same feature persisting through the skip
    connection), so the check is about the rest of its provenance."""
    from neuroscope.graphs.provenance import ProvenanceConfig, provenance

    cfg = cfg or ProvenanceConfig(depth=1, fold_identity=False)
    rng = random.Random(seed)
    rows = []
    for prompt, pos, f in targets:
        g = provenance(model, suite, layer, f, prompt, pos, cfg)
        p = g.target["position"]
        effects = feature_parent_effects(g)
        if skip_identity is not None:
            d_target = suite.sae(layer).W_dec[f]
            below = suite.sae(int(g.node(next(iter(effects))).layer or 0)) if effects else None
            effects = {
                nid: w
                for nid, w in effects.items()
                if below is not None
                and float(torch.cosine_similarity(below.W_dec[g.node(nid).feature or 0], d_target, dim=0))
                < skip_identity
            }
        ranked = sorted(((w, nid) for nid, w in effects.items() if w > 0), reverse=True)[:k]
        if len(ranked) < k:
            continue
        top_set: list[tuple[int, int]] = [
            (int(g.node(nid).feature or 0), int(g.node(nid).pos or 0)) for _, nid in ranked
        ]
        lo, top = g.meta["lowest_stream"], g.n_streams - 1
        run = clean_run(model, model.to_tokens(prompt)[0], lo, top, suite)
        up = run.streams[top - 1]
        assert up.idx is not None and up.vals is not None
        pool = [
            (int(up.idx[s, m]), s)
            for s in range(p + 1)
            for m in range(up.idx.shape[1])
            if float(up.vals[s, m]) > 0 and (int(up.idx[s, m]), s) not in top_set
        ]
        if len(pool) < k:
            continue
        sets: list[list[tuple[int, int]]] = [[], top_set] + [rng.sample(pool, k) for _ in range(n_random)]
        acts = _ablated_activations(model, suite, run, layer, f, p, sets)
        clean = float(acts[0])
        drops = (clean - acts[1:]).tolist()
        rows.append(
            {
                "prompt": prompt if isinstance(prompt, str) else "",
                "position": p,
                "feature": f,
                "activation": clean,
                "drop_top": drops[0],
                "drop_random": float(np.mean(np.abs(drops[1:]))),
                "drop_random_signed": float(np.mean(drops[1:])),
                "parents": [g.node(nid).label for _, nid in ranked],
            }
        )
    top_d = np.array([r["drop_top"] for r in rows])
    rnd_d = np.array([r["drop_random"] for r in rows])
    ratio = (
        float(np.median(top_d) / np.median(rnd_d)) if len(rows) and np.median(rnd_d) != 0 else float("inf")
    )
    brng = np.random.default_rng(seed)
    boots = []
    for _ in range(2000):
        i = brng.integers(0, len(rows), len(rows)) if rows else np.array([], dtype=int)
        den = np.median(rnd_d[i]) if len(i) else 0.0
        boots.append(np.median(top_d[i]) / den if den != 0 else np.inf)
    ci = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if rows else (np.nan, np.nan)
    return CausalResult(
        targets=rows,
        median_drop_top=float(np.median(top_d)) if rows else float("nan"),
        median_drop_random=float(np.median(rnd_d)) if rows else float("nan"),
        ratio=ratio,
        ratio_ci=ci,
        frac_top_greater=float(np.mean(top_d > rnd_d)) if rows else float("nan"),
        n_random=n_random,
        extra={"k": k, "layer": layer, "n_targets": len(rows), "skip_identity": skip_identity},
    )
