"""Where a trigger travels: layer × position-group patching of the residual stream.

For every layer ``l`` and position group (the trigger's tokens, the last prompt token, the response tokens),
the clean rows are run with ``blocks.l.hook_resid_pre`` at that group's positions overwritten by the
triggered run's values. The score is normalised: 0 = the clean run's metric, 1 = the triggered run's. Early
on, the trigger's own positions restore the behaviour; where the score moves to the last prompt token, the
information has been copied there (by attention) and the trigger's tokens no longer matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.analysis.behaviour import GROUPS, BehaviourPairs, run_metric
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass
class TraceResult:
    layers: list[int]
    groups: list[str]
    values: list[list[float]]  # [layer][group], normalised (0 clean, 1 triggered)
    metrics: list[list[float]]  # [layer][group], the raw mean log p of the response
    metric_triggered: float
    metric_clean: float
    n_prompts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def figure(self) -> Any:
        from neuroscope.analysis import figures

        fig = figures.heatmap(
            [list(r) for r in zip(*self.values, strict=True)],
            x=[str(l) for l in self.layers],
            y=self.groups,
            title=(
                "Where the trigger travels: triggered resid_pre patched into the clean run "
                f"(1 = behaviour restored; {self.n_prompts} prompts)"
            ),
            xlabel="layer",
            ylabel="positions patched",
            text=[[f"{v:.2f}" for v in r] for r in zip(*self.values, strict=True)],
        )
        return fig


def trigger_trace(
    model: HookedModel,
    pairs: BehaviourPairs,
    layers: Sequence[int] | None = None,
    groups: Sequence[str] = GROUPS,
    batch_size: int = 8,
) -> TraceResult:
    """Patch triggered ``resid_pre`` into the clean run at each layer and position group (see module doc)."""
    for g in groups:
        if g not in GROUPS:
            raise InvalidConfigError(f"unknown position group {g!r}; choose from {GROUPS}")
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    for l in layers:
        model.check_layer(l)
    m_trig = float(run_metric(model, pairs, "triggered", batch_size=batch_size).mean())
    m_clean = float(run_metric(model, pairs, "clean", batch_size=batch_size).mean())
    span = m_trig - m_clean
    if abs(span) < 1e-9:
        raise InvalidConfigError(
            "the triggered and clean prompts give the same response log-probability: nothing to trace"
        )
    dev = model.device
    names = [f"blocks.{l}.hook_resid_pre" for l in layers]
    trig = []  # per batch, the triggered residual streams of every traced layer: recorded once
    with torch.no_grad():
        for b in pairs.batches(batch_size):
            _, c = model.run_with_cache(
                b.triggered.to(dev), names=names, attention_mask=b.mask.to(dev), stop_at_layer=max(layers) + 1
            )
            trig.append({n: c[n] for n in names})
    values, metrics = [], []
    for name in names:
        row_v, row_m = [], []
        for g in groups:
            it = iter(trig)

            def hooks(b: BehaviourPairs, _name: str = name, _g: str = g, _it=it) -> list:
                src, where = next(_it)[_name], b.groups[_g].to(dev)[..., None]
                return [(_name, lambda x, hook: torch.where(where, src.to(x.dtype), x))]

            m = float(run_metric(model, pairs, "clean", hooks, batch_size=batch_size).mean())
            row_m.append(round(m, 6))
            row_v.append(round((m - m_clean) / span, 4))
        values.append(row_v)
        metrics.append(row_m)
    return TraceResult(layers, list(groups), values, metrics, m_trig, m_clean, len(pairs))
