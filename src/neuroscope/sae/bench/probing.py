"""Sparse probing (SAEBench's ``sparse_probing``): can k SAE latents carry a labelled concept?

For each binary task (a class against the rest of its set, negatives sampled as many as the positives, as
SAEBench's ``prepare_probe_data`` does), the ``k`` latents with the largest |mean difference| between the
classes on the train split are kept, a logistic regression is fitted on them and its test accuracy reported,
beside the same probe on the raw residual: on all its dimensions (SAEBench's ``llm_test_accuracy``) and on
its ``k`` dimensions of largest mean difference (``llm_top_k``). Probes are
:func:`neuroscope.analysis.probes.fit_logistic` (L-BFGS, L2) on standardised inputs, with the scaling folded
back so the weights act on raw activations (SCR and TPP dot them with decoder rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from neuroscope.analysis.probes import fit_logistic
from neuroscope.sae.bench.labelled import LabelledSet, Split
from neuroscope.sae.bench.pooled import Pooled

KS = (1, 2, 5)


@dataclass(frozen=True)
class BinaryProbe:
    """A logistic-regression probe on raw activations: ``logit = x @ weight + bias`` (> 0: positive)."""

    weight: torch.Tensor
    bias: float

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() @ self.weight + self.bias

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(((self.logits(x) > 0).long() == y).float().mean())


def fit_binary(x: torch.Tensor, y: torch.Tensor, weight_decay: float = 1e-3, seed: int = 0) -> BinaryProbe:
    """Fit on standardised features (train statistics), return the probe in raw units."""
    x = x.float()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    lin = fit_logistic((x - mu) / sd, y.long(), 2, weight_decay=weight_decay, seed=seed)
    with torch.no_grad():
        w = (lin.weight[1] - lin.weight[0]) / sd
        b = float(lin.bias[1] - lin.bias[0]) - float((w * mu).sum())
    return BinaryProbe(w.detach(), b)


@dataclass(frozen=True)
class BinaryTask:
    """``positive`` against the rest of ``set_name``: indices into that set's pooled arrays and 0/1 labels."""

    set_name: str
    positive: str
    train: torch.Tensor
    train_y: torch.Tensor
    test: torch.Tensor
    test_y: torch.Tensor

    @property
    def name(self) -> str:
        return f"{self.set_name}:{self.positive}"


def _balanced(
    idx: torch.Tensor, labels: torch.Tensor, c: int, gen: torch.Generator
) -> tuple[torch.Tensor, ...]:
    pos = idx[labels[idx] == c]
    others = [int(o) for o in torch.unique(labels[idx]) if int(o) != c]
    per_class = math.ceil(len(pos) / max(1, len(others)))
    neg = []
    for o in others:
        pool = idx[labels[idx] == o]
        neg.append(pool[torch.randperm(len(pool), generator=gen)[:per_class]])
    negs = torch.cat(neg)
    negs = negs[torch.randperm(len(negs), generator=gen)[: len(pos)]]
    both = torch.cat([pos, negs])
    y = torch.cat([torch.ones(len(pos), dtype=torch.long), torch.zeros(len(negs), dtype=torch.long)])
    order = torch.randperm(len(both), generator=gen)
    return both[order], y[order]


def binary_tasks(lset: LabelledSet, split: Split, seed: int = 0) -> list[BinaryTask]:
    """One task for a two-class set (the first class as positive), one per class otherwise."""
    labels = torch.tensor(lset.labels)
    gen = torch.Generator().manual_seed(seed)
    present = [c for c in range(len(lset.classes)) if c in lset.labels]
    positives = present[:1] if len(present) == 2 else present
    tasks = []
    for c in positives:
        tr, tr_y = _balanced(split.train, labels, c, gen)
        te, te_y = _balanced(split.test, labels, c, gen)
        tasks.append(BinaryTask(lset.name, lset.classes[c], tr, tr_y, te, te_y))
    return tasks


def top_k_mean_diff(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """SAEBench's ``get_top_k_mean_diff_mask``: the ``k`` columns of largest |mean(pos) - mean(neg)|."""
    diff = (x[y == 1].float().mean(0) - x[y == 0].float().mean(0)).abs()
    return torch.argsort(diff, descending=True, stable=True)[:k]


def sparse_accuracy(
    x_tr: torch.Tensor,
    y_tr: torch.Tensor,
    x_te: torch.Tensor,
    y_te: torch.Tensor,
    k: int | None,
    seed: int = 0,
) -> float:
    cols = top_k_mean_diff(x_tr, y_tr, k) if k is not None else slice(None)
    return fit_binary(x_tr[:, cols], y_tr, seed=seed).accuracy(x_te[:, cols], y_te)


@dataclass
class SparseProbingResult:
    """Test accuracies per task: the residual probe (all dims, top-k dims) and each SAE's top-k latents."""

    ks: tuple[int, ...]
    tasks: list[str]
    residual: list[float]
    residual_top_k: dict[int, list[float]]
    sae_top_k: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    sets: dict[str, list[int]] = field(default_factory=dict)  # set name -> its task indices

    def _by_set(self, values: Sequence[float]) -> float:
        """SAEBench's average: mean over a set's tasks, then over sets."""
        means = [sum(values[i] for i in idx) / len(idx) for idx in self.sets.values() if idx]
        return sum(means) / len(means) if means else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "residual": self._by_set(self.residual),
            "residual_top_k": {k: self._by_set(v) for k, v in self.residual_top_k.items()},
            "sae_top_k": {s: {k: self._by_set(v) for k, v in d.items()} for s, d in self.sae_top_k.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        per_set = {}
        for name, idx in self.sets.items():
            sub = SparseProbingResult(
                self.ks, self.tasks, self.residual, self.residual_top_k, self.sae_top_k, {name: idx}
            )
            per_set[name] = sub.summary()
        return {
            "ks": list(self.ks),
            "summary": self.summary(),
            "per_set": per_set,
            "per_task": [
                {
                    "task": t,
                    "residual": self.residual[i],
                    "residual_top_k": {k: v[i] for k, v in self.residual_top_k.items()},
                    "sae_top_k": {s: {k: v[i] for k, v in d.items()} for s, d in self.sae_top_k.items()},
                }
                for i, t in enumerate(self.tasks)
            ],
        }

    def figure(self):
        from neuroscope.analysis import figures

        s = self.summary()
        series = {name: [d[k] for k in self.ks] for name, d in s["sae_top_k"].items()}
        series["residual top-k dims"] = [s["residual_top_k"][k] for k in self.ks]
        series["residual, all dims"] = [s["residual"]] * len(self.ks)
        return figures.lines(
            list(self.ks), series, title="sparse probing", xlabel="k", ylabel="test accuracy"
        )


def sparse_probing(
    pooled: Mapping[str, Pooled], tasks: Sequence[BinaryTask], ks: Sequence[int] = KS, seed: int = 0
) -> SparseProbingResult:
    """Every task's probes; ``pooled`` maps each set name to its pooled activations (codes of every SAE)."""
    ks = tuple(ks)
    res = SparseProbingResult(ks, [t.name for t in tasks], [], {k: [] for k in ks})
    names = sorted(
        {n for p in pooled.values() for n in p.codes}, key=list(next(iter(pooled.values())).codes).index
    )
    res.sae_top_k = {n: {k: [] for k in ks} for n in names}
    for i, t in enumerate(tasks):
        p = pooled[t.set_name]
        res.sets.setdefault(t.set_name, []).append(i)
        xr_tr, xr_te = p.resid[t.train], p.resid[t.test]
        res.residual.append(sparse_accuracy(xr_tr, t.train_y, xr_te, t.test_y, None, seed))
        for k in ks:
            res.residual_top_k[k].append(sparse_accuracy(xr_tr, t.train_y, xr_te, t.test_y, k, seed))
            for n in names:
                z = p.codes[n]
                res.sae_top_k[n][k].append(
                    sparse_accuracy(z[t.train], t.train_y, z[t.test], t.test_y, k, seed)
                )
    return res
