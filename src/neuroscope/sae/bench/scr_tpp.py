"""SCR and TPP (SAEBench's ``scr_and_tpp``): does ablating the latents tied to one concept remove that concept,
and only that one, from probes on the residual?

Both rank latents by SAEBench's attribution to a residual probe ``w``: ``effect_f = Δmean_f · (w · W_dec[f])``,
``Δmean_f`` the difference of the latent's mean (pooled) activation between the probe's positive and negative
train examples. The top-``n`` latents (non-zero effects only) are zero-ablated at every token with the SAE error
kept, i.e. the pooled residual becomes ``x - codes[:, A] @ W_dec[A]`` (see :mod:`.pooled`).

SCR (spurious correlation removal): a set with a target label and a spurious one (``section-x-code``: tutorial
vs library, code vs prose). A *biased* probe is trained only where the two coincide. Direction 1 ablates the
latents of a spurious-label probe and measures the biased probe on target-labelled test data;
``S = (A_ablated - A_biased) / (A_target_probe - A_biased)`` (0 when the denominator is under 0.001). Direction 2
swaps the roles. SAEBench reports, per ``n``, the direction in which the biased probe is worse on its
evaluation data (the label it leans on less is the one ablation should recover); we do the same, and report both.
Effects use |effect| for SCR.

TPP (targeted probe perturbation): for each task ``i``, ablate the latents of probe ``i`` (effects clamped at
``Δmean ≥ 0``, SAEBench's "positive class only"); ``TPP = mean_i [drop of probe i] - mean_{i≠j} [drop of probe
j]``, accuracies on each probe's own test data. SAEBench runs it within one dataset's classes; with our binary
sets there is no other class within a set, so the tasks of every set are pooled into one TPP run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import LabelledSetError
from neuroscope.sae.bench.labelled import LabelledSet, Split
from neuroscope.sae.bench.pooled import Pooled
from neuroscope.sae.bench.probing import BinaryProbe, BinaryTask, fit_binary

if TYPE_CHECKING:
    from neuroscope.sae.model import SAE

NS = (2, 5, 10, 20, 50, 100, 500)
HEADLINE_N = 20


def effects(
    codes: torch.Tensor, y: torch.Tensor, probe: BinaryProbe, w_dec: torch.Tensor, scr: bool
) -> torch.Tensor:
    """SAEBench's ``get_effects_per_class_precomputed_acts`` on pooled codes."""
    diff = codes[y == 1].float().mean(0) - codes[y == 0].float().mean(0)
    if not scr:
        diff = diff.clamp(min=0.0)
    e = diff * (w_dec.float() @ probe.weight.float())
    return e.abs() if scr else e


def top_n(e: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` largest effects among the non-zero ones (SAEBench's ``select_top_n_features``)."""
    nz = int((e != 0).sum())
    k = min(n, nz)
    return torch.topk(e, k).indices if k else torch.zeros(0, dtype=torch.long)


def ablate(
    resid: torch.Tensor, codes: torch.Tensor, w_dec: torch.Tensor, latents: torch.Tensor
) -> torch.Tensor:
    if latents.numel() == 0:
        return resid
    return resid - codes[:, latents] @ w_dec[latents].float()


# --- SCR ----------------------------------------------------------------------------------------------------------
@dataclass
class SCRProbes:
    """The residual probes of SCR and their clean accuracies (shared by every SAE)."""

    biased: BinaryProbe
    target: BinaryProbe
    spurious: BinaryProbe
    train: dict[str, tuple[torch.Tensor, torch.Tensor]]  # data key -> (indices, 0/1 labels)
    test: dict[str, tuple[torch.Tensor, torch.Tensor]]
    accuracy: dict[str, float]


def _scr_data(lset: LabelledSet, idx: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    y = (torch.tensor(lset.labels)[idx] == 0).long()  # positive: the first target class (tutorial)
    assert lset.spurious is not None
    z = (torch.tensor(lset.spurious)[idx] == 0).long()  # positive: the first spurious class (code)
    agree = y == z
    return {"target": (idx, y), "spurious": (idx, z), "biased": (idx[agree], y[agree])}


def scr_probes(lset: LabelledSet, split: Split, pooled: Pooled, seed: int = 0) -> SCRProbes:
    if lset.spurious is None:
        raise LabelledSetError(f"SCR needs a set with a second (spurious) label; {lset.name!r} has none.")
    train, test = _scr_data(lset, split.train), _scr_data(lset, split.test)
    probes = {k: fit_binary(pooled.resid[i], y, seed=seed) for k, (i, y) in train.items()}
    acc = {
        "target probe on target data": probes["target"].accuracy(
            pooled.resid[test["target"][0]], test["target"][1]
        ),
        "spurious probe on spurious data": probes["spurious"].accuracy(
            pooled.resid[test["spurious"][0]], test["spurious"][1]
        ),
        "biased probe on target data": probes["biased"].accuracy(
            pooled.resid[test["target"][0]], test["target"][1]
        ),
        "biased probe on spurious data": probes["biased"].accuracy(
            pooled.resid[test["spurious"][0]], test["spurious"][1]
        ),
        "biased probe on biased data": probes["biased"].accuracy(
            pooled.resid[test["biased"][0]], test["biased"][1]
        ),
    }
    return SCRProbes(probes["biased"], probes["target"], probes["spurious"], train, test, acc)


@dataclass
class SCRResult:
    ns: tuple[int, ...]
    dir1: dict[int, float]  # ablate the spurious label's latents, biased probe on target data
    dir2: dict[int, float]  # ablate the target label's latents, biased probe on spurious data
    chosen: str  # which direction SAEBench's scr_metric reports
    ablated_accuracy: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def metric(self) -> dict[int, float]:
        return self.dir1 if self.chosen == "dir1" else self.dir2

    def to_dict(self) -> dict[str, Any]:
        return {
            "scr_metric": self.metric,
            "chosen_direction": self.chosen,
            "dir1": self.dir1,
            "dir2": self.dir2,
            "ablated_accuracy": self.ablated_accuracy,
        }


def scr(
    probes: SCRProbes, pooled: Pooled, sae_name: str, w_dec: torch.Tensor, ns: Sequence[int] = NS
) -> SCRResult:
    codes = pooled.codes[sae_name]
    acc = probes.accuracy
    dirs = {
        # ablated probe, data for its effects, evaluation data, clean (oracle) accuracy key, original key
        "dir1": (
            probes.spurious,
            "spurious",
            "target",
            "target probe on target data",
            "biased probe on target data",
        ),
        "dir2": (
            probes.target,
            "target",
            "spurious",
            "spurious probe on spurious data",
            "biased probe on spurious data",
        ),
    }
    scores: dict[str, dict[int, float]] = {"dir1": {}, "dir2": {}}
    ablated: dict[str, dict[int, float]] = {"dir1": {}, "dir2": {}}
    for d, (probe, eff_key, eval_key, clean_key, orig_key) in dirs.items():
        ti, ty = probes.train[eff_key]
        e = effects(codes[ti], ty, probe, w_dec, scr=True)
        ei, ey = probes.test[eval_key]
        for n in ns:
            x = ablate(pooled.resid[ei], codes[ei], w_dec, top_n(e, n))
            changed = probes.biased.accuracy(x, ey)
            clean, original = acc[clean_key], acc[orig_key]
            ablated[d][n] = changed
            scores[d][n] = 0.0 if clean - original < 0.001 else (changed - original) / (clean - original)
    chosen = "dir1" if acc["biased probe on target data"] <= acc["biased probe on spurious data"] else "dir2"
    return SCRResult(tuple(ns), scores["dir1"], scores["dir2"], chosen, ablated)


# --- TPP ----------------------------------------------------------------------------------------------------------
def task_probes(
    pooled: Mapping[str, Pooled], tasks: Sequence[BinaryTask], seed: int = 0
) -> list[BinaryProbe]:
    return [fit_binary(pooled[t.set_name].resid[t.train], t.train_y, seed=seed) for t in tasks]


@dataclass
class TPPResult:
    ns: tuple[int, ...]
    tasks: list[str]
    total: dict[int, float]
    intended: dict[int, float]
    unintended: dict[int, float]
    per_task: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tpp_metric": self.total,
            "intended_diff": self.intended,
            "unintended_diff": self.unintended,
            "tasks": self.tasks,
            "per_task": self.per_task,
        }


def tpp(
    pooled: Mapping[str, Pooled],
    tasks: Sequence[BinaryTask],
    probes: Sequence[BinaryProbe],
    sae_name: str,
    w_dec: torch.Tensor,
    ns: Sequence[int] = NS,
) -> TPPResult:
    if len(tasks) < 2:
        raise LabelledSetError(
            "TPP needs at least two probing tasks (one class of interest and others to spare)."
        )
    clean = [
        p.accuracy(pooled[t.set_name].resid[t.test], t.test_y) for t, p in zip(tasks, probes, strict=True)
    ]
    per_task: dict[str, dict[int, dict[str, float]]] = {}
    for i, ti in enumerate(tasks):
        c = pooled[ti.set_name].codes[sae_name]
        e = effects(c[ti.train], ti.train_y, probes[i], w_dec, scr=False)
        per_task[ti.name] = {}
        for n in ns:
            latents = top_n(e, n)
            drops = []
            for t, p, a in zip(tasks, probes, clean, strict=True):
                pj = pooled[t.set_name]
                x = ablate(pj.resid[t.test], pj.codes[sae_name][t.test], w_dec, latents)
                drops.append(a - p.accuracy(x, t.test_y))
            others = [d for j, d in enumerate(drops) if j != i]
            intended, unintended = drops[i], sum(others) / len(others)
            per_task[ti.name][n] = {
                "total": intended - unintended,
                "intended": intended,
                "unintended": unintended,
            }
    mean = lambda key, n: sum(per_task[t.name][n][key] for t in tasks) / len(tasks)  # noqa: E731
    return TPPResult(
        tuple(ns),
        [t.name for t in tasks],
        {n: mean("total", n) for n in ns},
        {n: mean("intended", n) for n in ns},
        {n: mean("unintended", n) for n in ns},
        per_task,
    )


def tpp_clean_accuracy(
    pooled: Mapping[str, Pooled], tasks: Sequence[BinaryTask], probes: Sequence[BinaryProbe]
) -> dict[str, float]:
    return {
        t.name: p.accuracy(pooled[t.set_name].resid[t.test], t.test_y)
        for t, p in zip(tasks, probes, strict=True)
    }


def decoder(sae: SAE) -> torch.Tensor:
    return sae.W_dec.detach().float().cpu()
