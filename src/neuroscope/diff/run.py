"""``diff_models``: the whole comparison of a tuned model with its base, as one result."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from neuroscope.diff.compat import check_comparable
from neuroscope.diff.features import alignment, feature_changes
from neuroscope.diff.outputs import output_changes
from neuroscope.diff.prompts import PromptSets
from neuroscope.diff.weights import ModuleDiff, weight_diff
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE


@dataclass(frozen=True)
class DiffConfig:
    k: int = 8
    """Top singular values/directions kept per module."""
    top: int = 10
    """Heads, MLPs and features listed as most changed."""
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.k < 1 or self.top < 1 or self.batch_size < 1:
            raise InvalidConfigError("k, top and batch_size must be >= 1")


@dataclass
class DiffResult:
    base: str
    tuned: str
    modules: list[ModuleDiff]  # largest ‖ΔW‖ first
    outputs: dict[str, dict[str, list]] = field(default_factory=dict)  # prompt kind -> output_changes
    top_heads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    top_mlps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    features: list[dict[str, Any]] = field(default_factory=list)
    alignment: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "modules"}
        d["modules"] = [m.to_dict() for m in self.modules]
        return d

    def figure(self) -> Any:
        """‖ΔW‖_F per layer and module (rows: module paths; the planted or fine-tuned modules stand out)."""
        from neuroscope.analysis import figures

        paths = sorted({m.name.split(".", 2)[2] for m in self.modules})
        layers = sorted({m.layer for m in self.modules})
        grid = [[math.nan] * len(layers) for _ in paths]
        for m in self.modules:
            grid[paths.index(m.name.split(".", 2)[2])][layers.index(m.layer)] = m.norm
        return figures.heatmap(
            grid,
            x=[str(l) for l in layers],
            y=paths,
            title=f"‖ΔW‖_F of {self.tuned} against {self.base}",
            xlabel="layer",
            ylabel="module",
            diverging=False,
        )

    def head_figure(self, kind: str = "triggered") -> Any:
        from neuroscope.analysis import figures

        if kind not in self.outputs:
            raise InvalidConfigError(f"no output changes on {kind!r} prompts; have {sorted(self.outputs)}")
        return figures.heatmap(
            self.outputs[kind]["head_rel"],
            title=f"Relative change of each head's output on {kind} prompts (tuned vs base)",
            xlabel="head",
            ylabel="layer",
            diverging=False,
        )


def _top(values: list, top: int, key: str) -> list[dict[str, Any]]:
    flat = []
    for l, row in enumerate(values):
        if isinstance(row, list):
            flat += [{"layer": l, key: h, "change": v} for h, v in enumerate(row)]
        else:
            flat.append({"layer": l, "change": row})
    return sorted(flat, key=lambda r: -r["change"])[:top]


def diff_models(
    base: HookedModel,
    tuned: HookedModel,
    prompts: PromptSets | Mapping[str, Sequence[str]] | None = None,
    saes: Mapping[int, SAE] | None = None,
    features: Sequence[tuple[int, int]] = (),
    cfg: DiffConfig | None = None,
) -> DiffResult:
    """ΔW spectra of every linear module; with ``prompts`` (kind -> prompts, e.g. triggered/clean) the most
    changed heads and MLPs; with ``saes`` (layer -> SAE) also the most changed features; with ``features``
    ((layer, feature) pairs, e.g. the top of :func:`neuroscope.analysis.effects.rank_effects`) their
    alignment with ΔW's top output directions. The base is checked against the tuned model first."""
    cfg = cfg or DiffConfig()
    check_comparable(base, tuned)
    t0 = time.perf_counter()
    sets: dict[str, Sequence[str]] = {}
    if prompts is not None:
        sets = (
            {"triggered": prompts.triggered, "clean": prompts.clean}
            if isinstance(prompts, PromptSets)
            else dict(prompts)
        )
    res = DiffResult(base.cfg.name, tuned.cfg.name, weight_diff(base, tuned, cfg.k), config=asdict(cfg))
    for kind, ps in sets.items():
        ch = output_changes(base, tuned, ps, cfg.batch_size)
        res.outputs[kind] = ch
        res.top_heads[kind] = _top(ch["head_rel"], cfg.top, "head")
        res.top_mlps[kind] = _top(ch["mlp_rel"], cfg.top, "mlp")
    if saes and sets:
        res.features = feature_changes(base, tuned, saes, sets, cfg.top, cfg.batch_size)
    if saes and features:
        res.alignment = alignment(res.modules, saes, features)
    res.seconds = time.perf_counter() - t0
    return res
