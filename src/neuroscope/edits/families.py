"""Edit families, each a hooked intervention first (exact; toggled live through the interventions every
forward takes) and then a LoRA: closed form where that is exact, distilled otherwise.

``HookedEdit`` is the exact edit plus how it was chosen; :func:`realise` turns it into a measured LoRA,
:func:`export_edit` saves it as a PEFT adapter, evaluates the saved files in plain transformers + peft and
writes the manifest with ``meets_goals``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from neuroscope.edits.closed_form import check_features
from neuroscope.edits.distill import DistillConfig, distill_edit
from neuroscope.edits.edit import EDIT_FILE, LoraEdit, check_rank
from neuroscope.edits.gated import GatedEdit, GateMode, gated_edits
from neuroscope.edits.heads import (
    HeadMode,
    HeadTarget,
    head_ablation_edit,
    head_distill_paths,
    head_reference,
)
from neuroscope.edits.host import EditHost
from neuroscope.edits.multi import feature_directions, multi_ablation_edit, multi_ablation_reference
from neuroscope.edits.reference import ClampFeature
from neuroscope.edits.targets import parse_hook, writer_paths
from neuroscope.edits.verify import DEFAULT_GOALS, measure, meets_goals, plain_peft_check
from neuroscope.errors import InvalidConfigError, RankOutOfRangeError
from neuroscope.interventions import Intervention

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

CleanTarget = Literal["edit", "base"]


@dataclass
class HookedEdit:
    """An exact edit: ``interventions`` (what the workbench toggles), what a distilled LoRA must match on
    clean prompts (``clean_target``: the edit itself, or the unedited model), and how it was chosen."""

    family: str
    interventions: list[Intervention]
    chosen: dict[str, Any]
    last_hook: str  # the latest residual read point: distillation targets the writers before it
    clean_target: CleanTarget = "edit"
    closed_form: LoraEdit | None = None
    closed_form_note: str = ""
    distil_paths: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def clean_interventions(self) -> list[Intervention] | None:
        return [] if self.clean_target == "base" else None


def _last_hook(model: HookedModel, hooks: Sequence[str]) -> str:
    order = {"resid_pre": 0, "resid_mid": 1, "attn_out": 1, "mlp_out": 2, "resid_post": 2}
    return max(hooks, key=lambda h: (parse_hook(model, h)[0], order[parse_hook(model, h)[1]]))


def multi_feature_ablate(
    model: HookedModel, saes: Mapping[int, SAE], pairs: Sequence[tuple[int, int]], rank: int = 8
) -> HookedEdit:
    """Project out several features' decoder directions, read at one layer or several (closed form)."""
    dirs = feature_directions(model, saes, pairs)
    chosen = {"family": "ablate", "features": [f"{l}:{f}" for l, f in pairs], "hooks": list(dirs)}
    closed, note = None, ""
    try:
        closed = multi_ablation_edit(model, dirs, rank, info=dict(chosen))
    except RankOutOfRangeError as e:
        note = str(e)
    return HookedEdit(
        "ablate",
        multi_ablation_reference(model, dirs),
        chosen,
        _last_hook(model, list(dirs)),
        closed_form=closed,
        closed_form_note=note,
    )


def multi_feature_clamp(
    model: HookedModel,
    saes: Mapping[int, SAE],
    pairs: Sequence[tuple[int, int]],
    value: float | None = None,
    scale: float | None = None,
) -> HookedEdit:
    """Clamp several features (where each fires) to ``value`` or by ``scale``; distilled."""
    by_layer: dict[int, list[int]] = {}
    for l, f in pairs:
        by_layer.setdefault(int(l), []).append(int(f))
    ivs: list[Intervention] = []
    hooks = []
    for l, feats in by_layer.items():
        if l not in saes:
            raise InvalidConfigError(f"no SAE at layer {l} (the suite has layers {sorted(saes)})")
        sae = saes[l]
        hooks.append(model.resolve_hook_name(sae.cfg.hook_name))
        ivs.append(ClampFeature(sae, check_features(sae, feats), value=value, scale=scale))
    chosen = {
        "family": "clamp",
        "features": [f"{l}:{f}" for l, f in pairs],
        "hooks": hooks,
        "value": value,
        "scale": scale,
    }
    return HookedEdit("clamp", ivs, chosen, _last_hook(model, hooks))


def gated_edit(
    model: HookedModel,
    gates: Sequence[GatedEdit],
    clean: torch.Tensor | None = None,
    clean_mask: torch.Tensor | None = None,
    quantile: float = 1.0,
    margin: float = 0.0,
) -> HookedEdit:
    """Gated edits; with ``clean`` tokens their thresholds are set from clean data (``auto``) and reported,
    otherwise each gate's own threshold is reported as given."""
    if not gates:
        raise InvalidConfigError("a gated edit needs at least one gate")
    if clean is not None:
        gates, report = gated_edits(model, gates, clean, clean_mask, quantile, margin)
    else:
        report = [
            {
                "hook": model.resolve_hook_name(g.hook),
                "feature": g.feature,
                "value": g.threshold,
                "clean_level": g.clean_level,
                "rule": "given",
            }
            for g in gates
        ]
    hooks = [model.resolve_hook_name(g.hook) for g in gates]
    chosen = {
        "family": "gated",
        "mode": gates[0].mode,
        "gates": [
            {**r, "kind": "sae feature" if g.sae is not None else "direction", "mode": g.mode}
            for g, r in zip(gates, report, strict=True)
        ],
    }
    return HookedEdit(
        "gated",
        list(gates),
        chosen,
        _last_hook(model, hooks),
        clean_target="base",
        closed_form_note="a gate is not linear: distilled",
    )


def direction_gates(
    hooks_and_directions: Sequence[tuple[str, torch.Tensor]], mode: GateMode = "excess"
) -> list[GatedEdit]:
    """Gates on directions with a placeholder threshold (set ``auto`` by :func:`gated_edit`)."""
    return [GatedEdit(h, float("inf"), mode, direction=d) for h, d in hooks_and_directions]


def feature_gates(
    saes: Mapping[int, SAE], pairs: Sequence[tuple[int, int]], mode: GateMode = "excess"
) -> list[GatedEdit]:
    out = []
    for l, f in pairs:
        if l not in saes:
            raise InvalidConfigError(f"no SAE at layer {l} (the suite has layers {sorted(saes)})")
        out.append(GatedEdit(saes[l].cfg.hook_name, float("inf"), mode, sae=saes[l], feature=int(f)))
    return out


def head_edit(
    model: HookedModel,
    heads: Sequence[HeadTarget],
    mode: HeadMode = "zero",
    reference: Any = None,
    rank: int = 16,
    layers_back: int = 2,
) -> HookedEdit:
    """Zero- or mean-ablate heads (``hook_z`` slices) at their positions; closed form where it fits."""
    ivs = head_reference(model, heads, mode, reference)
    closed, note = None, ""
    if mode == "zero" and all(h.positions is None for h in heads):
        try:
            closed = head_ablation_edit(model, heads, rank)
        except RankOutOfRangeError as e:
            note = str(e)
    else:
        note = "mean ablation or position-restricted heads are not a weight edit: distilled"
    last = max(h.layer for h in heads)
    chosen = {"family": "heads", "heads": [h.label() for h in heads], "mode": mode}
    return HookedEdit(
        "heads",
        ivs,
        chosen,
        f"blocks.{last}.hook_resid_post",
        clean_target="edit" if closed is not None else "base",
        closed_form=closed,
        closed_form_note=note,
        distil_paths=head_distill_paths(model, heads, layers_back),
    )


def _check_positions(edit: HookedEdit, data: Mapping[str, torch.Tensor]) -> None:
    """Positions counted from the end (``@last`` = -1) mean the last token of each row only where rows are
    unpadded; on right-padded prompts they would land on pads."""
    relative = [p for iv in edit.interventions for p in (getattr(iv, "positions", None) or []) if int(p) < 0]
    padded = any(
        bool((m == 0).any()) for k, m in data.items() if k.endswith("_mask") and isinstance(m, torch.Tensor)
    )
    if relative and padded:
        raise InvalidConfigError(
            f"the {edit.family} edit acts at positions counted from the end ({sorted(set(relative))}), but the "
            "prompts have different lengths (right-padded): give prompts of one token length, or absolute "
            "positions (e.g. @12)"
        )


def realise(
    model: HookedModel,
    edit: HookedEdit,
    data: Mapping[str, torch.Tensor] | None = None,
    rank: int = 8,
    cfg: DistillConfig | None = None,
    distil: bool | None = None,
) -> LoraEdit:
    """The LoRA for ``edit``: its closed form (``distil=None`` or ``False``) where one exists and is exact,
    else distilled on ``data`` (triggered = ``fire``, clean = ``quiet``); measured on ``data``'s held-out
    part against the hooked edit and the unedited model."""
    check_rank(rank)
    cfg = cfg or DistillConfig()
    closed = edit.closed_form
    use_closed = closed is not None and bool(closed.info.get("exact")) and not distil
    if distil is False and not use_closed:
        raise InvalidConfigError(
            f"the {edit.family} edit has no exact closed form ({edit.closed_form_note or 'inexact'}): distil it"
        )
    info: dict[str, Any] = {
        "family": edit.family,
        "model": model.cfg.name,
        "chosen": edit.chosen,
        "hooked": [type(i).__name__ for i in edit.interventions],
        "closed_form_note": edit.closed_form_note,
    }
    if data is not None:
        _check_positions(edit, data)
    if use_closed:
        assert closed is not None
        lora = closed
        lora.info = {**closed.info, **info, "exact": True, "distilled": False}
    else:
        if data is None:
            raise InvalidConfigError(f"a distilled {edit.family} edit needs triggered and clean prompts")
        paths = edit.distil_paths
        if paths is None:
            L, _ = parse_hook(model, edit.last_hook)
            paths = writer_paths(model, edit.last_hook, layers=range(max(0, L - cfg.layers_back + 1), L + 1))
        info["clean_target"] = "the unedited model" if edit.clean_target == "base" else "the hooked edit"
        lora, _ = distill_edit(
            model,
            edit.interventions,
            dict(data),
            rank,
            cfg,
            init=None,
            info={**info, "exact": False, "distilled": True, "method": edit.family},
            clean_reference=edit.clean_interventions,
            paths=paths,
        )
    if data is not None:
        host = EditHost.of(model)
        name = f"__realise_{id(lora)}"
        host.add(name, lora)
        try:
            lora.info["measured"] = measure(model, name, edit.interventions, data)
        finally:
            host.remove(name)
    return lora


def export_edit(
    model: HookedModel,
    edit: HookedEdit,
    lora: LoraEdit,
    out: str | os.PathLike,
    data: Mapping[str, torch.Tensor],
    goals: Mapping[str, float] | None = None,
    extra_measured: Mapping[str, Any] | None = None,
    base: str | os.PathLike | None = None,
) -> Path:
    """Save ``lora`` as a PEFT adapter, load the saved files in plain transformers + peft and compare them
    with the attached LoRA and the hooked edit, then write the manifest (``edit.json``) with what was
    measured and whether it meets ``goals`` (default :data:`DEFAULT_GOALS`; ``extra_measured`` adds the
    caller's figures, e.g. attack success, for goals on them)."""
    folder = lora.save(out, with_info=False)
    host = EditHost.of(model)
    name = f"__export_{id(lora)}"
    host.add(name, lora)
    try:
        plain = plain_peft_check(model, name, edit.interventions, folder, data, base)
        if "measured" not in lora.info:
            lora.info["measured"] = measure(model, name, edit.interventions, data)
    finally:
        host.remove(name)
    lora.info["measured"]["plain_peft"] = plain
    if extra_measured:
        lora.info["measured"].update(dict(extra_measured))
    lora.info.update(meets_goals(lora.info["measured"], DEFAULT_GOALS if goals is None else goals))
    (Path(folder) / EDIT_FILE).write_text(json.dumps(lora.to_dict(), indent=2, default=str))
    return Path(folder)
