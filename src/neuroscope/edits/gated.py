"""Conditional (gated) edits: act only where a direction's projection or an SAE latent fires above a
threshold set from clean data, and leave every other position exactly as it was.

Modes, where the score ``s`` (``x·u`` for a unit direction ``u``; the latent ``z_f`` for a feature) exceeds
the threshold ``τ``: ``zero`` sets it to 0, ``clean`` to its mean level on clean text, ``excess`` to ``τ``
(removing only what clean text never reaches). The stream moves along ``u`` (or the feature's decoder row),
so below the gate nothing changes. A gate is not linear in the input, so its LoRA is distilled
(:func:`neuroscope.edits.distill.distill_edit`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from neuroscope.edits.reference import FIRST_EDITABLE_POS
from neuroscope.errors import InvalidConfigError, ShapeMismatchError, UnknownFeatureError
from neuroscope.interventions import Binding, Intervention
from neuroscope.models.hooks import HookPoint

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

GateMode = Literal["zero", "clean", "excess"]
GATE_MODES = ("zero", "clean", "excess")


@dataclass
class GatedEdit(Intervention):
    """At ``hook``: where the score is above ``threshold``, set it to 0 / ``clean_level`` / ``threshold``.

    The score is ``x · direction/|direction|`` or, with ``sae`` and ``feature``, that SAE latent."""

    hook: str
    threshold: float
    mode: GateMode = "zero"
    direction: torch.Tensor | None = None
    sae: SAE | None = None
    feature: int | None = None
    clean_level: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in GATE_MODES:
            raise InvalidConfigError(f"gate mode must be one of {', '.join(GATE_MODES)}, got {self.mode!r}")
        if (self.direction is None) == (self.sae is None):
            raise InvalidConfigError("a gated edit needs exactly one of direction= or sae= (with feature=)")
        if self.sae is not None:
            if self.feature is None:
                raise InvalidConfigError("a gated SAE edit needs feature=")
            if not 0 <= int(self.feature) < self.sae.d_sae:
                raise UnknownFeatureError(
                    f"feature {self.feature} does not exist: this SAE has features 0..{self.sae.d_sae - 1}"
                )

    def _unit(self, model: HookedModel) -> torch.Tensor:
        d = self.direction
        assert d is not None
        if d.ndim != 1 or d.shape[0] != model.cfg.d_model:
            raise ShapeMismatchError("GatedEdit.direction", (model.cfg.d_model,), tuple(d.shape))
        d = d.double() if d.dtype == torch.float64 else d.float()
        return d / d.norm().clamp_min(1e-12)

    def score(self, x: torch.Tensor, unit: torch.Tensor | None = None) -> torch.Tensor:
        """``[b, p]`` scores of the stream ``x [b, p, d]``."""
        if self.sae is not None:
            return self.sae.encode(x)[..., int(self.feature)].to(x.dtype)  # type: ignore[arg-type]
        assert unit is not None
        return x @ unit.to(x.device, x.dtype)

    def bind(self, model: HookedModel) -> Binding:
        name = model.resolve_hook_name(self.hook)
        unit = self._unit(model) if self.direction is not None else None
        tau = float(self.threshold)
        level = {"zero": 0.0, "clean": float(self.clean_level), "excess": tau}[self.mode]

        def fn(x: torch.Tensor, hp: HookPoint) -> torch.Tensor:
            s = self.score(x, unit)
            delta = torch.where(s > tau, level - s, torch.zeros_like(s))
            first = max(0, FIRST_EDITABLE_POS - hp.pos_offset)
            delta[:, :first] = 0
            if unit is not None:
                write = unit.to(x.device, x.dtype)
            else:
                write = self.sae.W_dec[int(self.feature)].to(x.device, x.dtype)  # type: ignore[union-attr,arg-type]
            return x + delta.unsqueeze(-1) * write

        return [(name, fn)]


@torch.no_grad()
def mean_difference(model: HookedModel, data: Mapping[str, torch.Tensor], hook: str) -> torch.Tensor:
    """Mean triggered (``fire_train``) minus mean clean (``quiet_train``) activation at ``hook`` over every
    real position after the attention sink: the direction a trigger adds, for a gate to watch."""
    name = model.resolve_hook_name(hook)

    def mean(kind: str) -> torch.Tensor:
        ids, mask = data[f"{kind}_train"], data.get(f"{kind}_train_mask")
        total, count = torch.zeros(model.cfg.d_model, dtype=torch.float64), 0
        for i in range(0, ids.shape[0], 16):
            _, cache = model.run_with_cache(ids[i : i + 16], names=[name])
            x = cache[name][:, FIRST_EDITABLE_POS:].double().cpu()
            if mask is not None:
                x = x[mask[i : i + 16, FIRST_EDITABLE_POS:].bool()]
            x = x.reshape(-1, x.shape[-1])
            total += x.sum(0)
            count += x.shape[0]
        return total / max(count, 1)

    return (mean("fire") - mean("quiet")).float()


@dataclass(frozen=True)
class Threshold:
    """A gate's threshold and how it was set from clean data (reported in every manifest)."""

    value: float
    clean_level: float  # mean clean score: the ``clean`` mode's target
    how: str  # "max" or "quantile"
    quantile: float
    margin: float
    n_prompts: int
    n_positions: int
    clean_max: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rule": self.rule}

    @property
    def rule(self) -> str:
        base = "max" if self.how == "max" else f"{self.quantile:g} quantile"
        return f"{base} of the score over {self.n_positions} positions of {self.n_prompts} clean prompts" + (
            f", plus {self.margin:g}" if self.margin else ""
        )


@torch.no_grad()
def clean_scores(
    model: HookedModel, gate: GatedEdit, tokens: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Every real position's score on ``tokens`` (position 0, the attention sink, excluded)."""
    name = model.resolve_hook_name(gate.hook)
    layer = int(name.split(".")[1])
    unit = gate._unit(model) if gate.direction is not None else None
    out = []
    for i in range(0, tokens.shape[0], 16):
        _, cache = model.run_with_cache(tokens[i : i + 16], names=[name], stop_at_layer=layer + 1)
        s = gate.score(cache[name].float(), None if unit is None else unit.float())[:, FIRST_EDITABLE_POS:]
        if mask is not None:
            s = s[mask[i : i + 16, FIRST_EDITABLE_POS:].bool()]
        out.append(s.flatten().cpu())
    return torch.cat(out)


def clean_threshold(
    model: HookedModel,
    gate: GatedEdit,
    tokens: torch.Tensor,
    mask: torch.Tensor | None = None,
    quantile: float = 1.0,
    margin: float = 0.0,
) -> Threshold:
    """The threshold above which clean text (``tokens``) never (``quantile=1``: its max) or rarely goes."""
    if not 0 < quantile <= 1:
        raise InvalidConfigError(f"quantile must be in (0, 1], got {quantile}")
    s = clean_scores(model, gate, tokens, mask).double()
    if s.numel() == 0:
        raise InvalidConfigError("no clean positions to set the gate's threshold from: give clean prompts")
    q = float(s.max()) if quantile == 1 else float(torch.quantile(s, quantile))
    return Threshold(
        value=q + margin,
        clean_level=float(s.mean()),
        how="max" if quantile == 1 else "quantile",
        quantile=quantile,
        margin=margin,
        n_prompts=int(tokens.shape[0]),
        n_positions=int(s.numel()),
        clean_max=float(s.max()),
    )


def gated_edits(
    model: HookedModel,
    gates: Sequence[GatedEdit],
    clean: torch.Tensor,
    clean_mask: torch.Tensor | None = None,
    quantile: float = 1.0,
    margin: float = 0.0,
) -> tuple[list[GatedEdit], list[dict[str, Any]]]:
    """Set each gate's threshold (and clean level) from clean prompts: ``threshold="auto"``."""
    out, report = [], []
    for g in gates:
        th = clean_threshold(model, g, clean, clean_mask, quantile, margin)
        out.append(
            GatedEdit(g.hook, th.value, g.mode, g.direction, g.sae, g.feature, clean_level=th.clean_level)
        )
        report.append({"hook": model.resolve_hook_name(g.hook), "feature": g.feature, **th.to_dict()})
    return out, report
