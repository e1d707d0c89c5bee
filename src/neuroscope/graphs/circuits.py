"""Circuit discovery over a contrastive task: EAP-IG edge scores, top-N circuits, faithfulness by real ablation.

Components and edges are those of :mod:`neuroscope.graphs.assembled` (embeddings, heads, MLPs → heads, MLPs,
logits). The metric is the logit difference ``answer - wrong`` at the last position of each clean prompt.

- **Scores** (EAP-IG, Hanna et al. 2024, "inputs" variant): the token embeddings are interpolated from the
  corrupted to the clean prompt in ``steps`` midpoint steps; at each, one backward gives the metric's gradient
  with respect to every reader's input; edge (u → v) scores ``Δa_u · mean_k ∂m/∂in_v``, summed over positions,
  averaged over pairs, with ``Δa_u`` the writer's clean − corrupted output.
- **Faithfulness** of a circuit C (a set of edges): run each clean prompt with every edge outside C carrying the
  writer's mean output instead of its own (mean over the task's clean and corrupted prompts, position by
  position: position 0, the attention sink, on its own, the others aligned from the end) and report ``(m(C) - m(∅)) / (m(M) - m(∅))``: ``M`` keeps every edge,
  ``∅`` none. Measured by real forwards, not by the linear estimate; random circuits of the same size beside.
- :func:`edge_ig` is integrated gradients along one edge (the writer's output added to one reader's input
  in the corrupted run): by construction it converges to the exact effect of patching that edge.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.errors import InvalidConfigError, NeuroscopeError, TaskFileError
from neuroscope.graphs import schema
from neuroscope.graphs.assembled import Assembler, Components

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


# --- tasks ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    clean: str
    corrupted: str
    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor
    answer: int
    wrong: int


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    pairs: tuple[Pair, ...]


def load_task(model: HookedModel, task: str | dict[str, Any]) -> Task:
    """A shipped task (``ioi``) or a JSON file / dict ``{"prompts": [{"clean", "corrupted", "answer",
    "wrong"}, ...]}``. Clean and corrupted prompts of a pair must tokenize to the same length and the answers
    to single tokens; anything else is a :class:`TaskFileError` naming the pair."""
    from neuroscope.analysis._util import load_data, token_id

    name = task if isinstance(task, str) else str(task.get("name", "task"))
    try:
        data = load_data(task) if isinstance(task, str) else task
    except (FileNotFoundError, OSError, ValueError) as e:
        raise TaskFileError(f"cannot read task {task!r}: {e}") from e
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, list) or not prompts:
        raise TaskFileError(f"task {name!r} needs a non-empty 'prompts' list of clean/corrupted pairs")
    pairs = []
    for i, p in enumerate(prompts):
        missing = [k for k in ("clean", "corrupted", "answer", "wrong") if not isinstance(p.get(k), str)]
        if missing:
            raise TaskFileError(f"task {name!r}, pair {i}: missing or non-string {', '.join(missing)}")
        c, k = model.to_tokens(p["clean"])[0], model.to_tokens(p["corrupted"])[0]
        if c.shape != k.shape:
            raise TaskFileError(
                f"task {name!r}, pair {i}: the clean prompt is {c.shape[0]} tokens and the corrupted one "
                f"{k.shape[0]}; they must match position by position ({p['clean']!r} / {p['corrupted']!r})"
            )
        try:
            a, w = token_id(model, p["answer"]), token_id(model, p["wrong"])
        except NeuroscopeError as e:
            raise TaskFileError(f"task {name!r}, pair {i}: {e}") from e
        pairs.append(Pair(p["clean"], p["corrupted"], c, k, a, w))
    return Task(name, str(data.get("description", "")), tuple(pairs))


BASELINES = ("corrupted", "mean")


# --- scores ---------------------------------------------------------------------------------------------------
def _runs(asm: Assembler, pair: Pair) -> tuple[Any, Any]:
    """The writers' outputs in the clean and the corrupted run."""
    return (
        asm.outputs(pair.clean_ids, pair.answer, pair.wrong),
        asm.outputs(pair.corrupted_ids, pair.answer, pair.wrong),
    )


# gradients are taken inside: callable from torch.inference_mode() (the server's model worker)
@torch.inference_mode(False)
def edge_scores(
    model: HookedModel, task: Task, steps: int = 5, baseline: str = "corrupted", means: Any = None
) -> torch.Tensor:
    """EAP-IG scores ``[n_down, n_up]`` (zero where there is no edge), averaged over the task's pairs.
    ``baseline``: what the clean run is compared with, ``corrupted`` (each pair's corrupted prompt; EAP-IG
    as published) or ``mean`` (every writer at its task mean, ``means`` from :func:`task_means`: the state
    the faithfulness ablation puts removed edges in)."""
    if baseline not in BASELINES:
        raise InvalidConfigError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    asm = Assembler(model)
    c = asm.c
    if baseline == "mean" and means is None:
        means = task_means(asm, task)
    total = torch.zeros(c.n_down, c.n_up, dtype=torch.float64)
    for pair in task.pairs:
        clean, corr = _runs(asm, pair)
        ref = corr.outs if baseline == "corrupted" else _pair_means(means, pair.clean_ids.shape[0])
        e_clean, e_corr = clean.outs[0], ref[0]
        grads = torch.zeros(c.n_down, *clean.outs.shape[1:], dtype=clean.outs.dtype)
        for k in range(steps):
            alpha = (k + 0.5) / steps
            _, g = asm.input_grads(
                pair.clean_ids, pair.answer, pair.wrong, e_corr + alpha * (e_clean - e_corr)
            )
            grads += g
        grads /= steps
        delta = clean.outs - ref  # [n_up, pos, d]
        total += torch.einsum("vpd,upd->vu", grads, delta).double()
    return (total / len(task.pairs)) * c.edge_mask()


# gradients are taken inside: callable from torch.inference_mode() (the server's model worker)
@torch.inference_mode(False)
def edge_ig(
    model: HookedModel, pair: Pair, up: int, down: int, steps: int, asm: Assembler | None = None
) -> tuple[float, float]:
    """(integrated-gradients estimate, exact effect) of patching one edge: in the corrupted run, reader
    ``down`` gets writer ``up``'s clean output instead of its corrupted one."""
    asm = asm or Assembler(model)
    if not asm.c.edge_mask()[down, up]:
        raise InvalidConfigError(f"{asm.c.up_name(up)} -> {asm.c.down_name(down)} is not an edge")
    clean, corr = _runs(asm, pair)
    delta = clean.outs[up] - corr.outs[up]
    with torch.no_grad():
        exact = (
            asm.run(pair.corrupted_ids, pair.answer, pair.wrong, deltas={down: delta}).metric - corr.metric
        )
    est = 0.0
    for k in range(steps):
        alpha = (k + 0.5) / steps
        p = asm.run(pair.corrupted_ids, pair.answer, pair.wrong, deltas={down: alpha * delta}, grad=True)
        g = asm.reader_grads(p)[down]
        est += float((g * delta).sum()) / steps
    return est, float(exact)


# --- faithfulness ---------------------------------------------------------------------------------------------
def task_means(asm: Assembler, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """Each writer's mean output over the task's clean and corrupted prompts, position by position: position 0
    (the attention sink) on its own, the others aligned from the end (templates of different lengths share
    their endings, where the task's names and answer sit). Returns ``(first [n_up, d], from_end [n_up,
    longest - 1, d])``, ``from_end[:, i]`` the mean at ``i`` tokens before the last one."""
    first = None
    sums: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    longest = max(p.clean_ids.shape[0] for p in task.pairs)
    for pair in task.pairs:
        for p in _runs(asm, pair):
            o = p.outs  # [n_up, pos, d]
            first = o[:, 0] if first is None else first + o[:, 0]
            if sums is None:
                sums = torch.zeros(o.shape[0], longest - 1, o.shape[2], dtype=o.dtype)
                counts = torch.zeros(longest - 1, dtype=o.dtype)
            rest = o[:, 1:].flip(1)  # distance from the end: 0 = last token
            assert counts is not None
            sums[:, : rest.shape[1]] += rest
            counts[: rest.shape[1]] += 1
    assert first is not None and sums is not None and counts is not None
    return first / (2 * len(task.pairs)), sums / counts.clamp_min(1)[None, :, None]


def _pair_means(means: tuple[torch.Tensor, torch.Tensor], pos: int) -> torch.Tensor:
    first, from_end = means
    return torch.cat([first[:, None], from_end[:, : pos - 1].flip(1)], 1)


def circuit_metric(asm: Assembler, task: Task, mask: torch.Tensor | None, means: Any) -> float:
    """The mean clean-prompt metric with only ``mask``'s edges carrying their writers' outputs."""
    vals = []
    with torch.no_grad():
        for pair in task.pairs:
            pm = None if mask is None else _pair_means(means, pair.clean_ids.shape[0])
            vals.append(float(asm.run(pair.clean_ids, pair.answer, pair.wrong, mask=mask, means=pm).metric))
    return float(np.mean(vals))


# --- the whole procedure --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CircuitConfig:
    """``edges``: the reported circuit's size. ``steps``: IG steps. ``sizes``: circuit sizes of the
    faithfulness curve (default: a geometric range up to 5% of the edges and beyond). ``random_draws``:
    random circuits per size. ``connected``: a circuit is the top edges that lie on complete paths from
    the embeddings to the logits (:func:`connected_top_mask`), else the plain top-N by |score|."""

    edges: int = 200
    steps: int = 5
    sizes: tuple[int, ...] | None = None
    random_draws: int = 5
    seed: int = 0
    baseline: str = "corrupted"
    connected: bool = True

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise InvalidConfigError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.edges < 1 or self.steps < 1 or self.random_draws < 0:
            raise InvalidConfigError("edges and steps must be >= 1, random_draws >= 0")
        if self.sizes is not None and any(s < 1 for s in self.sizes):
            raise InvalidConfigError(f"sizes must be >= 1, got {self.sizes}")


def default_sizes(n_edges: int, edges: int) -> list[int]:
    grid = {10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, edges, max(1, round(0.05 * n_edges))}
    grid |= {max(1, round(f * n_edges)) for f in (0.01, 0.02, 0.1, 0.2)}
    return sorted(s for s in grid if s <= n_edges)


def top_mask(scores: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    flat = torch.where(valid, scores.abs(), torch.full_like(scores, -1.0)).reshape(-1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, n).indices] = True
    return keep.reshape(scores.shape) & valid


def connected_top_mask(scores: torch.Tensor, c: Components, n: int) -> torch.Tensor:
    """The top edges by |score| that lie on complete paths embeddings → logits: the shortest prefix of the
    ranking whose on-path edges number at least ``n`` (an edge from a writer nothing in the circuit feeds, or
    into a reader that reaches no logit, carries nothing the circuit computes)."""
    valid = c.edge_mask()
    flat = torch.where(valid, scores.abs(), torch.full_like(scores, -1.0)).reshape(-1)
    order = torch.argsort(flat, descending=True)[: int(valid.sum())]

    def prefix(k: int) -> torch.Tensor:
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[order[:k]] = True
        return c.on_paths(keep.reshape(scores.shape))

    lo, hi = 1, order.numel()
    while lo < hi:
        mid = (lo + hi) // 2
        if int(prefix(mid).sum()) >= n:
            hi = mid
        else:
            lo = mid + 1
    return prefix(lo)


def random_mask(valid: torch.Tensor, n: int, rng: random.Random) -> torch.Tensor:
    idx = valid.reshape(-1).nonzero()[:, 0].tolist()
    keep = torch.zeros(valid.numel(), dtype=torch.bool)
    keep[rng.sample(idx, n)] = True
    return keep.reshape(valid.shape)


@dataclass
class CircuitResult:
    model: str
    task: str
    n_layers: int
    components: Components
    scores: torch.Tensor  # [n_down, n_up]
    edges: list[tuple[str, str, float]]  # the reported circuit, largest |score| first
    curve: list[dict[str, Any]]
    clean_metric: float
    empty_metric: float
    seconds: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_edges_total(self) -> int:
        return int(self.components.edge_mask().sum())

    def faithfulness_at(self, n: int) -> float:
        """Faithfulness of the circuit asked for with ``n`` edges."""
        return next(r["faithfulness"] for r in self.curve if r["n_requested"] == n)

    def to_dict(self) -> dict[str, Any]:
        nodes: dict[str, schema.Node] = {}
        L = self.n_layers

        def node(name: str) -> str:
            if name not in nodes:
                if name == "embed":
                    nodes[name] = schema.Node(name, "embed", 0.0, "embeddings")
                elif name == "logits":
                    nodes[name] = schema.Node(name, "logits", L + 0.5, "logits (answer − wrong)")
                elif name.startswith("MLP"):
                    l = int(name[3:])
                    nodes[name] = schema.Node(name, "mlp", l + 0.7, f"MLP {l}", layer=l)
                else:
                    l, h = (int(x) for x in name[1:].split("H"))
                    nodes[name] = schema.Node(name, "head", l + 0.4, f"L{l}H{h}", layer=l, head=h)
            return name

        edges = []
        for src, dst, w in self.edges:
            s, d = node(src), node(dst)
            nodes[s].attribution += abs(w)
            nodes[d].attribution += abs(w)
            edges.append(schema.Edge(s, d, w, "circuit"))
        bands = schema.bands_for(L + 1) + [{"band": L + 0.5, "label": "logits"}]
        meta = {
            **self.meta,
            "task": self.task,
            "n_edges_total": self.n_edges_total,
            "clean_metric": self.clean_metric,
            "empty_metric": self.empty_metric,
            "faithfulness_curve": self.curve,
            "seconds": self.seconds,
        }
        title = f"{self.task} circuit: top {len(self.edges)} of {self.n_edges_total} edges (EAP-IG)"
        return schema.document("circuit", self.model, title, list(nodes.values()), edges, None, bands, meta)

    def figure(self):
        from neuroscope.graphs.figure import graph_figure

        return graph_figure(self.to_dict())

    def curve_figure(self):
        from neuroscope.analysis import figures

        xs = [r["n_edges"] for r in self.curve]
        return figures.lines(
            xs,
            {
                "circuit (top-N by |EAP-IG|)": [r["faithfulness"] for r in self.curve],
                "random circuits (mean)": [r["random_mean"] for r in self.curve],
            },
            title=f"faithfulness on {self.task} (mean ablation)",
            xlabel="edges",
            ylabel="fraction of logit difference recovered",
        )

    def summary(self) -> str:
        lines = [
            f"{self.task}: {self.n_edges_total} edges; clean metric {self.clean_metric:.4f}, all ablated "
            f"{self.empty_metric:.4f}; scores {self.seconds.get('scores', 0):.1f} s, curve "
            f"{self.seconds.get('curve', 0):.1f} s",
            f"{'edges':>8} {'share':>8} {'faithful':>9} {'random':>9}",
        ]
        for r in self.curve:
            lines.append(
                f"{r['n_edges']:>8} {r['fraction']:>8.2%} {r['faithfulness']:>9.3f} {r['random_mean']:>9.3f}"
            )
        return "\n".join(lines)


# gradients are taken inside: callable from torch.inference_mode() (the server's model worker)
@torch.inference_mode(False)
def find_circuit(model: HookedModel, task: Task, cfg: CircuitConfig | None = None) -> CircuitResult:
    cfg = cfg or CircuitConfig()
    asm = Assembler(model)
    c = asm.c
    valid = c.edge_mask()
    n_total = int(valid.sum())
    if cfg.edges > n_total:
        raise InvalidConfigError(f"edges={cfg.edges} but the model has {n_total} edges")
    t0 = time.perf_counter()
    means = task_means(asm, task)
    scores = edge_scores(model, task, cfg.steps, cfg.baseline, means)
    t_scores = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = circuit_metric(asm, task, None, means)
    empty = circuit_metric(asm, task, torch.zeros_like(valid), means)
    rng = random.Random(cfg.seed)
    curve = []
    for n in sorted(set(cfg.sizes or default_sizes(n_total, cfg.edges))):
        if n > n_total:
            continue
        mask = connected_top_mask(scores, c, n) if cfg.connected else top_mask(scores, valid, n)
        size = int(mask.sum())
        m = circuit_metric(asm, task, mask, means)
        rand = [
            circuit_metric(asm, task, random_mask(valid, size, rng), means) for _ in range(cfg.random_draws)
        ]
        den = full - empty
        f = (m - empty) / den if den else math.nan
        rf = [(r - empty) / den if den else math.nan for r in rand]
        curve.append(
            {
                "n_edges": size,
                "n_requested": n,
                "fraction": size / n_total,
                "metric": m,
                "faithfulness": f,
                "random_mean": float(np.mean(rf)) if rf else math.nan,
                "random_min": float(np.min(rf)) if rf else math.nan,
                "random_max": float(np.max(rf)) if rf else math.nan,
            }
        )
    t_curve = time.perf_counter() - t0
    keep = connected_top_mask(scores, c, cfg.edges) if cfg.connected else top_mask(scores, valid, cfg.edges)
    order = sorted(
        ((float(scores[v, u]), v, u) for v, u in keep.nonzero().tolist()), key=lambda x: -abs(x[0])
    )
    edges = [(c.up_name(u), c.down_name(v), w) for w, v, u in order]
    return CircuitResult(
        model=model.cfg.name,
        task=task.name,
        n_layers=model.cfg.n_layers,
        components=c,
        scores=scores,
        edges=edges,
        curve=curve,
        clean_metric=full,
        empty_metric=empty,
        seconds={"scores": round(t_scores, 2), "curve": round(t_curve, 2)},
        meta={
            "steps": cfg.steps,
            "baseline": cfg.baseline,
            "random_draws": cfg.random_draws,
            "n_pairs": len(task.pairs),
            "prompt": task.pairs[0].clean,
            "connected": cfg.connected,
            "method": "EAP-IG (inputs), midpoint rule; faithfulness by mean ablation of every edge outside the circuit",
        },
    )
