"""``sae-bench synthetic``: train every SAE architecture, ours and SAELens's, on activations drawn once
from a seeded SAELens synthetic model with known features, and score how well each recovers them.

One draw of ``tokens`` training activations (and a separate held-out draw for FVU, L0 and dead latents)
feeds every run, so trainers differ only in what they do with identical data, width, batch size and
budget. TopK-like architectures get the target L0 as ``k``; ReLU + L1 and JumpReLU reach it through a
penalty coefficient set by a few short calibration runs (SAELens's JumpReLU asks for it directly with its
quadratic L0 penalty). Each run reports MCC and feature uniqueness against the true directions (see
:mod:`neuroscope.sae.bench.metrics`), FVU, L0 and dead latents on the held-out draw, and its speed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.sae.bench import metrics
from neuroscope.sae.bench.config import SynthBenchConfig
from neuroscope.sae.bench.saelens_runs import sae_lens_module

TRAINERS = ("neuroscope", "saelens")


@dataclass
class SyntheticData:
    model: Any  # sae_lens.synthetic.SyntheticModel
    train: torch.Tensor
    eval: torch.Tensor
    features: torch.Tensor  # [num_features, hidden_dim], the true directions
    true_l0: float
    seconds: float


def generate(cfg: SynthBenchConfig, chunk: int = 65_536) -> SyntheticData:
    """Build the seeded synthetic model and draw the training and held-out activations (each from its own
    seed, so the held-out set does not depend on the training budget). Not under ``no_grad``: SAELens
    orthogonalises the dictionary by gradient descent."""
    sae_lens_module()
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig

    t0 = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = SyntheticModel(SyntheticModelConfig.from_dict({**cfg.model, "seed": cfg.seed}))

        @torch.no_grad()
        def draw(n: int, seed: int) -> tuple[torch.Tensor, float]:
            torch.manual_seed(seed)
            out, active = [], 0.0
            for i in range(0, n, chunk):
                h, f = model.sample_with_features(min(chunk, n - i))
                out.append(h.float())
                active += float((f != 0).sum())
            return torch.cat(out), active / n

        train, _ = draw(cfg.tokens, cfg.seed + 1)
        held, true_l0 = draw(cfg.eval_tokens, cfg.seed + 2)
    features = model.feature_dict.feature_vectors.detach().float().clone()
    return SyntheticData(model, train, held, features, true_l0, time.perf_counter() - t0)


@dataclass
class SynthRun:
    trainer: str  # "neuroscope" or "saelens"
    arch: str
    target_l0: int
    mcc: float
    uniqueness: float
    fvu: float
    l0: float
    dead: int
    d_sae: int
    tokens: int
    seconds: float
    tokens_per_s: float
    lr: float
    settings: dict[str, Any] = field(default_factory=dict)
    calibration: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(
    trainer: str, arch: str, target: int, sae: metrics.DictionarySAE, data: SyntheticData, **info: Any
) -> SynthRun:
    rec = metrics.reconstruction(sae, data.eval)
    dec = sae.W_dec.detach().float()
    return SynthRun(
        trainer=trainer,
        arch=arch,
        target_l0=target,
        mcc=round(metrics.mcc(dec, data.features), 4),
        uniqueness=round(metrics.feature_uniqueness(dec, data.features), 4),
        fvu=round(rec.fvu, 4),
        l0=round(rec.l0, 2),
        dead=rec.dead,
        d_sae=int(dec.shape[0]),
        tokens_per_s=round(info["tokens"] / max(info["seconds"], 1e-9), 1),
        **info,
    )


def knob_of(arch: str) -> str | None:
    """The config field that sets an architecture's L0: None when it takes ``k``, else its penalty
    coefficient (calibrated to the target)."""
    from neuroscope.sae.archs.registry import get_architecture

    a = get_architecture(arch)
    if a.uses_k:
        return None
    return next((k for k in a.cfg_keys if k.endswith("_coefficient")), None)


def calibrate(
    run: Callable[[float, int], float], start: float, target: float, tokens: int, probes: int
) -> tuple[float, list[dict[str, float]]]:
    """A penalty coefficient whose short run (``tokens``) reaches L0 ≈ ``target``: secant steps on
    log(coefficient) against log(L0), starting from ``start`` with a slope of -1; the probe nearest the
    target (in log L0) wins. ``run(coefficient, tokens)`` returns the L0 reached."""
    log_t = math.log(target)
    tried: list[dict[str, float]] = []
    c, slope = start, -1.0
    for _ in range(probes):
        l0 = max(run(c, tokens), 1e-3)
        tried.append({"coefficient": c, "l0": round(l0, 3)})
        if len(tried) >= 2:
            (c0, l00), (c1, l01) = ((t["coefficient"], t["l0"]) for t in tried[-2:])
            if c0 != c1 and abs(math.log(max(l01, 1e-3)) - math.log(max(l00, 1e-3))) > 1e-6:
                slope = (math.log(max(l01, 1e-3)) - math.log(max(l00, 1e-3))) / (math.log(c1) - math.log(c0))
                slope = min(slope, -0.1)  # L0 falls as the penalty grows
        c = math.exp(math.log(c) + (log_t - math.log(l0)) / slope)
        c = min(max(c, tried[-1]["coefficient"] / 100), tried[-1]["coefficient"] * 100)
    best = min(tried, key=lambda t: abs(math.log(max(t["l0"], 1e-3)) - log_t))
    return best["coefficient"], tried


def train_ours(
    data: SyntheticData, cfg: SynthBenchConfig, arch: str, target: int, progress: bool = False
) -> SynthRun:
    from neuroscope.sae.config import SAEConfig, TrainConfig
    from neuroscope.sae.train import train_sae_on_tensor

    base: dict[str, Any] = {"d_in": cfg.hidden_dim, "d_sae": cfg.d_sae, "arch": arch, "k": target}
    if arch == "matryoshka" and cfg.matryoshka_widths:
        base["matryoshka_widths"] = cfg.matryoshka_widths
    knob = knob_of(arch)

    def fit(extra: dict[str, Any], tokens: int) -> tuple[Any, Any]:
        tcfg = TrainConfig(batch_size=cfg.batch_size, max_tokens=tokens, seed=cfg.seed, progress=progress)
        return train_sae_on_tensor(data.train, SAEConfig(**base, **extra), tcfg)

    tried: list[dict[str, float]] = []
    extra: dict[str, Any] = {}
    if knob is not None:
        start = float(getattr(SAEConfig(**base), knob))
        short = max(cfg.batch_size, int(cfg.tokens * cfg.calibration_fraction))

        def probe(c: float, tokens: int) -> float:
            sae, _ = fit({knob: c}, tokens)
            return metrics.reconstruction(sae, data.eval).l0

        best, tried = calibrate(probe, start, target, short, cfg.calibration_probes)
        extra = {knob: best}
    sae, result = fit(extra, cfg.tokens)
    sae.eval()
    settings = {k: v for k, v in sae.cfg.to_dict().items() if k not in ("hook_name", "model_name", "dtype")}
    return score(
        "neuroscope",
        arch,
        target,
        sae,
        data,
        tokens=result.tokens,
        seconds=result.seconds,
        lr=result.lr,
        settings=settings,
        calibration=tried,
    )


def train_saelens(
    data: SyntheticData, cfg: SynthBenchConfig, arch: str, target: int, lr: float | None = None
) -> SynthRun:
    """SAELens's trainer at its documented learning rate, or at ``lr`` (a sensitivity check)."""
    from neuroscope.sae.bench import saelens_runs
    from neuroscope.sae.config import TrainConfig

    dead = TrainConfig().dead_tokens
    tried: list[dict[str, float]] = []
    knob = None
    if arch == "relu":  # SAELens's standard SAE has no L0 target: calibrate its L1 coefficient like ours

        def probe(c: float, tokens: int) -> float:
            r = saelens_runs.train(
                data.train, arch, cfg.d_sae, target, tokens, cfg.batch_size, cfg.seed, c, dead_tokens=dead
            )
            return metrics.reconstruction(r.sae, data.eval).l0

        short = max(cfg.batch_size, int(cfg.tokens * cfg.calibration_fraction))
        knob, tried = calibrate(probe, 1.0, target, short, cfg.calibration_probes)
    r = saelens_runs.train(
        data.train,
        arch,
        cfg.d_sae,
        target,
        cfg.tokens,
        cfg.batch_size,
        cfg.seed,
        knob,
        cfg.matryoshka_widths,
        dead_tokens=dead,
        lr=lr or saelens_runs.LR,
    )
    return score(
        "saelens",
        arch,
        target,
        r.sae,
        data,
        tokens=r.tokens,
        seconds=round(r.seconds, 3),
        lr=r.lr,
        settings=r.settings,
        calibration=tried,
    )


@dataclass
class SynthBenchResult:
    config: dict[str, Any]
    true_l0: float
    generation_seconds: float
    runs: list[SynthRun]
    machine: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthBenchResult:
        """Back from :meth:`to_dict` (to redraw the figure from a saved result)."""
        return cls(
            config=d["config"],
            true_l0=d["true_l0"],
            generation_seconds=d["generation_seconds"],
            runs=[SynthRun(**r) for r in d["runs"]],
            machine=d.get("machine", {}),
        )

    def best(self, trainer: str | None = None) -> SynthRun | None:
        runs = [r for r in self.runs if trainer is None or r.trainer == trainer]
        return max(runs, key=lambda r: r.mcc) if runs else None

    def comparison(self) -> list[dict[str, Any]]:
        """Ours against SAELens per architecture and target L0, where both ran."""
        out = []
        for r in self.runs:
            if r.trainer != "neuroscope":
                continue
            peer = next(
                (
                    p
                    for p in self.runs
                    if p.trainer == "saelens" and p.arch == r.arch and p.target_l0 == r.target_l0
                ),
                None,
            )
            if peer is not None:
                out.append(
                    {
                        "arch": r.arch,
                        "target_l0": r.target_l0,
                        "mcc_ours": r.mcc,
                        "mcc_saelens": peer.mcc,
                        "ours_at_least_saelens": r.mcc >= peer.mcc,
                        "l0_ours": r.l0,
                        "l0_saelens": peer.l0,
                        "speedup_tokens_per_s": round(r.tokens_per_s / max(peer.tokens_per_s, 1e-9), 2),
                    }
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        best = self.best()
        return {
            "config": self.config,
            "true_l0": round(self.true_l0, 3),
            "generation_seconds": round(self.generation_seconds, 2),
            "best": None if best is None else {"trainer": best.trainer, "arch": best.arch, "mcc": best.mcc},
            "comparison": self.comparison(),
            "runs": [r.to_dict() for r in self.runs],
            "machine": self.machine,
        }

    def figure(self) -> Any:
        """MCC against L0 (measured on the held-out draw), one marker per architecture, filled for ours and
        hollow for SAELens's."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        archs = sorted({r.arch for r in self.runs})
        colors = {a: plt.get_cmap("tab10")(i) for i, a in enumerate(archs)}
        for r in self.runs:
            ours = r.trainer == "neuroscope"
            ax.scatter(
                r.l0,
                r.mcc,
                s=60,
                marker="o" if ours else "s",
                facecolors=colors[r.arch] if ours else "none",
                edgecolors=colors[r.arch],
                linewidths=1.5,
            )
        for a in archs:
            ax.scatter([], [], marker="o", color=colors[a], label=a)
        ax.scatter([], [], marker="o", color="grey", label="NeuroScope (filled)")
        ax.scatter([], [], marker="s", facecolors="none", edgecolors="grey", label="SAELens (hollow)")
        ax.axvline(self.true_l0, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")  # L0s the penalty architectures miss lie an order of magnitude out
        ax.set_xlabel("L0 (held-out, log scale)")
        ax.set_ylabel("MCC (Hungarian |cos|, decoder vs true features)")
        ax.set_title(f"Synthetic ground truth: {self.config.get('name', '')} (dotted: true L0)")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig


def run_synthetic(
    cfg: SynthBenchConfig,
    archs: Sequence[str] | None = None,
    trainers: Sequence[str] = TRAINERS,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> SynthBenchResult:
    """Every (target L0, architecture, trainer); SAELens runs only the architectures it has. Ours and
    SAELens's alternate so that load on a shared machine hits both alike."""
    from neuroscope.sae.bench import saelens_runs
    from neuroscope.sae.config import ARCHITECTURES

    archs = list(archs) if archs else list(ARCHITECTURES)
    bad = [a for a in archs if a not in ARCHITECTURES]
    if bad:
        raise InvalidConfigError(f"Unknown architectures {bad}; valid: {', '.join(ARCHITECTURES)}.")
    bad_t = [t for t in trainers if t not in TRAINERS]
    if bad_t:
        raise InvalidConfigError(f"Unknown trainers {bad_t}; valid: {', '.join(TRAINERS)}.")
    data = generate(cfg)
    runs: list[SynthRun] = []
    for target in cfg.l0s:
        for arch in archs:
            if "neuroscope" in trainers:
                runs.append(train_ours(data, cfg, arch, target, progress))
                if log:
                    log(_line(runs[-1]))
            if "saelens" in trainers and saelens_runs.available(arch):
                runs.append(train_saelens(data, cfg, arch, target))
                if log:
                    log(_line(runs[-1]))
    return SynthBenchResult(cfg.to_dict(), data.true_l0, data.seconds, runs)


def _line(r: SynthRun) -> str:
    return (
        f"{r.trainer:10s} {r.arch:10s} L0 target {r.target_l0:3d} got {r.l0:6.2f}  MCC {r.mcc:.3f}  "
        f"uniq {r.uniqueness:.3f}  FVU {r.fvu:.3f}  dead {r.dead}  {r.tokens_per_s:,.0f} tok/s"
    )
