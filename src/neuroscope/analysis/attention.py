"""Attention patterns, per-head entropy/sparsity, and head scores and labels (previous-token, induction, ...).

The one head scorer of the package: the analysis CLI, the induction training reports (``neuroscope.train``)
and the workbench's head badges all call :func:`score_heads` (through :func:`head_scores`,
:func:`classify_heads` or :func:`label_heads`).

Detection patterns follow TransformerLens's ``head_detector``: a head's score is the attention mass it puts
on the detection pattern's keys. TransformerLens divides by the mass of *all* query rows, which caps an
induction head at about 0.5 on a twice-repeated sequence (the first half has nothing to copy); our headline
scores (``normalise="rows"``) average only over query rows that have a target, so a perfect head scores 1. The
TransformerLens number is ``normalise="tl"`` (``scores_tl`` of a classification).

A head is labelled with a kind when its score reaches ``THRESHOLDS[kind]`` (previous-token, induction,
duplicate-token and self 0.5; first-token 0.7, since attending to the first token is also what a head does
when it has nothing to do), and with its strongest such kind when several pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from jaxtyping import Float, Int

from neuroscope.analysis import figures
from neuroscope.analysis._util import bootstrap_ci, head_mask_hooks, tolist
from neuroscope.analysis.run import Run, as_run, model_of
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

KINDS = ("previous_token", "induction", "duplicate_token", "first_token", "self")
# a head gets a label when its score passes this (documented, overridable) threshold
THRESHOLDS = {
    "previous_token": 0.5,
    "induction": 0.5,
    "duplicate_token": 0.5,
    "first_token": 0.7,
    "self": 0.5,
}


def detection_patterns(tokens: Int[torch.Tensor, "batch pos"]) -> dict[str, Float[torch.Tensor, "batch q k"]]:
    """Binary [query, key] patterns of what each head type should attend to (TransformerLens definitions)."""
    b, p = tokens.shape
    eye = torch.eye(p, dtype=torch.bool, device=tokens.device)
    causal = torch.tril(torch.ones(p, p, dtype=torch.bool, device=tokens.device))
    same = (tokens[:, :, None] == tokens[:, None, :]) & causal & ~eye  # key j < query i holds the same token
    induction = torch.zeros_like(same)
    induction[:, :, 1:] = same[:, :, :-1]  # the token after the earlier occurrence
    induction &= causal
    prev = torch.zeros(p, p, dtype=torch.bool, device=tokens.device)
    prev[torch.arange(1, p), torch.arange(p - 1)] = True
    first = torch.zeros(p, p, dtype=torch.bool, device=tokens.device)
    first[:, 0] = True
    out = {
        "previous_token": prev.expand(b, p, p),
        "induction": induction,
        "duplicate_token": same,
        "first_token": first.expand(b, p, p),
        "self": eye.expand(b, p, p),
    }
    return {k: v.float() for k, v in out.items()}


def score_heads(
    pattern: Float[torch.Tensor, "batch head q k"], tokens: Int[torch.Tensor, "batch pos"]
) -> tuple[dict[str, Float[torch.Tensor, " head"]], dict[str, Float[torch.Tensor, " head"]]]:
    """(scores over query rows that have a target, TransformerLens's raw scores) for each kind."""
    ours, tl = {}, {}
    pat = pattern.float()
    for kind, det in detection_patterns(tokens.to(pat.device)).items():
        mass = (pat * det[:, None]).sum(-1)  # [b, h, q]
        rows = (det.sum(-1) > 0).float()[:, None]  # [b, 1, q]
        ours[kind] = (mass * rows).sum((0, 2)) / rows.sum((0, 2)).clamp_min(1)
        tl[kind] = mass.sum((0, 2)) / pat.sum((0, 2, 3))
    return ours, tl


Normalise = Literal["rows", "tl"]


def _layer_patterns(model: HookedModel | Run, tokens: str | torch.Tensor | None):
    """(every layer's pattern [batch, head, q, k], the token ids) of a run, a prompt or a batch of ids."""
    m = model_of(model)
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(m.cfg.n_layers)]
    if isinstance(tokens, torch.Tensor) and not isinstance(model, Run):
        ids = m.to_tokens(tokens)
        with torch.no_grad():
            _, cache = m.run_with_cache(ids, names=names)
        return [cache[n] for n in names], ids
    run = as_run(model, tokens, names)
    return [run.cache[n] for n in names], run.ids


def head_scores(
    model: HookedModel | Run,
    tokens: str | torch.Tensor | None = None,
    normalise: Normalise = "rows",
) -> dict[str, Float[torch.Tensor, "layer head"]]:
    """Every head's score for each kind in :data:`KINDS`, on a run, a prompt, or a batch of token ids
    (averaged over the batch). ``normalise="tl"`` gives TransformerLens's normalisation."""
    if normalise not in ("rows", "tl"):
        raise InvalidConfigError(f"normalise must be 'rows' or 'tl', got {normalise!r}")
    patterns, ids = _layer_patterns(model, tokens)
    per_layer = [score_heads(p, ids)[0 if normalise == "rows" else 1] for p in patterns]
    return {k: torch.stack([s[k] for s in per_layer]) for k in KINDS}


@dataclass(frozen=True)
class HeadLabel:
    layer: int
    head: int
    kind: str  # one of KINDS
    score: float


def label_heads(scores: dict[str, Any], thresholds: dict[str, float] | None = None) -> list[HeadLabel]:
    """Each head whose score reaches its kind's threshold, once, with its strongest such kind; by layer, head."""
    th = {**THRESHOLDS, **(thresholds or {})}
    best: dict[tuple[int, int], HeadLabel] = {}
    for kind, arr in scores.items():
        a = np.asarray(tolist(arr), dtype=np.float64)
        for l, h in zip(*np.nonzero(a >= th[kind]), strict=True):
            lab = HeadLabel(int(l), int(h), kind, float(a[l, h]))
            if (lab.layer, lab.head) not in best or lab.score > best[(lab.layer, lab.head)].score:
                best[(lab.layer, lab.head)] = lab
    return [best[key] for key in sorted(best)]


def _entropy_sparsity(pattern: Float[torch.Tensor, "batch head q k"]) -> tuple[torch.Tensor, torch.Tensor]:
    p = pattern.float()
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1).mean((0, 2))
    # sparsity: the mean largest weight of a query row (1 = one key takes everything)
    return ent, p.max(-1).values.mean((0, 2))


@dataclass
class AttentionResult:
    str_tokens: list[str]
    patterns: Float[torch.Tensor, "layer head q k"] = field(repr=False)
    entropy: list[list[float]]  # [layer][head], nats, mean over query positions
    sparsity: list[list[float]]  # [layer][head], mean top-1 weight
    scores: dict[str, list[list[float]]]  # on this prompt

    def to_dict(self) -> dict[str, Any]:
        return {
            "str_tokens": self.str_tokens,
            "patterns": tolist(self.patterns),
            "entropy": self.entropy,
            "sparsity": self.sparsity,
            "scores": self.scores,
        }

    def figure(self, layer: int = 0, head: int = 0):
        return figures.heatmap(
            self.patterns[layer, head],
            x=self.str_tokens,
            y=self.str_tokens,
            diverging=False,
            title=f"attention pattern L{layer}H{head}",
            xlabel="key",
            ylabel="query",
        )

    def entropy_figure(self):
        return figures.heatmap(
            self.entropy,
            title="attention entropy per head (nats)",
            xlabel="head",
            ylabel="layer",
            diverging=False,
        )


def attention_patterns(model: HookedModel | Run, prompt: str | None = None) -> AttentionResult:
    """Every head's pattern on one prompt (or run), with its entropy, sparsity and scores."""
    pats_by_layer, ids = _layer_patterns(model, prompt)
    pats = torch.stack([p[0] for p in pats_by_layer])  # [layer, head, q, k]
    ent: list = []
    sp: list = []
    scores: dict[str, list] = {k: [] for k in KINDS}
    for l in range(pats.shape[0]):
        e, s = _entropy_sparsity(pats[l][None])
        ent.append(tolist(e))
        sp.append(tolist(s))
        ours, _ = score_heads(pats[l][None], ids)
        for k in KINDS:
            scores[k].append(tolist(ours[k]))
    m = model_of(model)
    str_tokens = [m.tokenizer.decode([int(i)]) for i in ids[0]]
    return AttentionResult(str_tokens, pats.cpu(), ent, sp, scores)


def repeated_random_tokens(
    model: HookedModel, n_seqs: int, half_len: int, seed: int, bos: bool = True
) -> torch.Tensor:
    """``[n_seqs, (1) + 2*half_len]``: a seeded random token run repeated twice (no repeats inside a half)."""
    gen = torch.Generator().manual_seed(seed)
    special = set(model.tokenizer.all_special_ids)
    allowed = torch.tensor([i for i in range(model.cfg.d_vocab) if i not in special])
    if half_len > len(allowed):
        raise InvalidConfigError(f"half_len {half_len} exceeds the {len(allowed)} usable tokens")
    rows = []
    for _ in range(n_seqs):
        half = allowed[torch.randperm(len(allowed), generator=gen)[:half_len]]
        rows.append(torch.cat([half, half]))
    ids = torch.stack(rows)
    bos_id = model.tokenizer.bos_token_id
    if bos and bos_id is not None:
        ids = torch.cat([torch.full((n_seqs, 1), bos_id), ids], 1)
    return ids.to(model.device)


@dataclass
class HeadClassification:
    scores: dict[str, list[list[float]]]  # kind -> [layer][head]
    scores_tl: dict[str, list[list[float]]]
    thresholds: dict[str, float]
    labels: dict[
        str, list[tuple[int, int, float]]
    ]  # kind -> [(layer, head, score)] above threshold, best first
    n_seqs: int
    half_len: int
    seed: int

    def top(self, kind: str, k: int) -> list[tuple[int, int]]:
        arr = np.asarray(self.scores[kind])
        order = np.argsort(-arr, axis=None)[:k]
        return [
            (int(np.unravel_index(i, arr.shape)[0]), int(np.unravel_index(i, arr.shape)[1])) for i in order
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": self.scores,
            "scores_tl": self.scores_tl,
            "thresholds": self.thresholds,
            "labels": {k: [list(x) for x in v] for k, v in self.labels.items()},
            "n_seqs": self.n_seqs,
            "half_len": self.half_len,
            "seed": self.seed,
        }

    def figure(self, kind: str = "induction"):
        return figures.heatmap(
            self.scores[kind],
            title=f"{kind} score per head (random repeated tokens)",
            xlabel="head",
            ylabel="layer",
            diverging=False,
        )


def classify_heads(
    model: HookedModel,
    n_seqs: int = 8,
    half_len: int = 20,
    seed: int = 0,
    thresholds: dict[str, float] | None = None,
) -> HeadClassification:
    """Score every head on seeded random repeated sequences and label those above the thresholds."""
    th = {**THRESHOLDS, **(thresholds or {})}
    ids = repeated_random_tokens(model, n_seqs, half_len, seed)
    patterns, _ = _layer_patterns(model, ids)
    per_layer = [score_heads(p, ids) for p in patterns]
    scores = {k: [tolist(ours[k]) for ours, _ in per_layer] for k in KINDS}
    scores_tl = {k: [tolist(tl[k]) for _, tl in per_layer] for k in KINDS}
    labels = {}
    for k in KINDS:
        arr = np.asarray(scores[k])
        hits = [(int(l), int(h), float(arr[l, h])) for l, h in zip(*np.nonzero(arr >= th[k]), strict=False)]
        labels[k] = sorted(hits, key=lambda x: -x[2])
    return HeadClassification(scores, scores_tl, th, labels, n_seqs, half_len, seed)


@dataclass
class InductionAblation:
    top_heads: list[tuple[int, int]]
    clean_loss: float
    top_delta: float  # loss increase on the repeated half from ablating the top heads
    random_deltas: list[float]  # one per seeded draw of k other heads
    random_mean: float
    random_ci: tuple[float, float]
    ratio: float  # top_delta / random_mean
    ratio_ci: tuple[float, float]  # from the bootstrap interval of random_mean
    random_heads: list[list[tuple[int, int]]]

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["top_heads"] = [list(h) for h in self.top_heads]
        d["random_heads"] = [[list(h) for h in s] for s in self.random_heads]
        return d

    def figure(self):
        return figures.bars(
            ["top heads"] + [f"random {i}" for i in range(len(self.random_deltas))],
            [self.top_delta] + self.random_deltas,
            title="loss increase on the repeated half after zero-ablation",
            ylabel="Δ loss (nats)",
        )


def induction_ablation(
    model: HookedModel,
    classification: HeadClassification,
    k: int = 3,
    n_draws: int = 20,
    n_seqs: int = 4,
    half_len: int = 20,
    seed: int = 1,
    batch_size: int = 32,
) -> InductionAblation:
    """Zero-ablate the top-k induction heads vs ``n_draws`` seeded sets of k other heads; loss on the repeated half.

    Every configuration is a row block of one batched forward (a per-row head mask at ``hook_z``).
    """
    L, H = model.cfg.n_layers, model.cfg.n_heads
    top = classification.top("induction", k)
    others = [(l, h) for l in range(L) for h in range(H) if (l, h) not in top]
    rng = np.random.default_rng(seed)
    draws = [[others[i] for i in rng.choice(len(others), size=k, replace=False)] for _ in range(n_draws)]
    configs = [[], top] + draws
    ids = repeated_random_tokens(model, n_seqs, half_len, seed + 1000)
    keep = torch.ones(len(configs), L, H)
    for c, heads in enumerate(configs):
        for l, h in heads:
            keep[c, l, h] = 0
    start = ids.shape[1] - half_len + 1  # targets inside the repeated half that are predictable by copying
    losses = []
    rows_keep = keep.repeat_interleave(n_seqs, 0)
    rows_ids = ids.repeat(len(configs), 1)
    with torch.no_grad():
        for i in range(0, rows_ids.shape[0], batch_size):
            logits = model.run_with_hooks(
                rows_ids[i : i + batch_size], fwd_hooks=head_mask_hooks(model, rows_keep[i : i + batch_size])
            )
            lp = torch.log_softmax(logits[:, start - 1 : -1].float(), -1)
            tgt = rows_ids[i : i + batch_size, start:]
            losses.append(-lp.gather(-1, tgt[..., None]).squeeze(-1).mean(-1))
    per_config = torch.cat(losses).view(len(configs), n_seqs).mean(1).cpu().numpy()
    clean = float(per_config[0])
    top_delta = float(per_config[1] - clean)
    rnd = (per_config[2:] - clean).tolist()
    rmean = float(np.mean(rnd))
    lo, hi = bootstrap_ci(rnd, seed=seed)
    ratio = top_delta / rmean if rmean != 0 else float("inf")
    ratio_ci = (top_delta / hi if hi > 0 else float("inf"), top_delta / lo if lo > 0 else float("inf"))
    return InductionAblation(top, clean, top_delta, rnd, rmean, (lo, hi), ratio, ratio_ci, draws)
