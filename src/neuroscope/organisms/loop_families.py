"""The candidate edits of the automatic loop, built from what localisation measured: several features at
once (ablated, or gated where they exceed their clean range), heads (mean-ablated), the trigger's
difference-of-means direction gated at several layers, and, with the base model, the top directions of the
weight difference ΔW gated where they leave their clean range (WeightWatch).

Every candidate is a :class:`~neuroscope.edits.families.HookedEdit` built from the train split only (units
ranked there and validated on the validation split by ``rank_effects``; gate thresholds from clean train
prompts). The loop chooses among them on the validation split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.edits import families as fam
from neuroscope.edits.gated import mean_difference
from neuroscope.edits.heads import HeadTarget
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.analysis.effects import Effect, EffectResult
    from neuroscope.edits.families import HookedEdit
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

FAMILIES = (
    "features_ablate",
    "features_gated",
    "heads_mean",
    "direction_gated",
    "delta_w_gated",
    "knockout",
)


@dataclass(frozen=True)
class TrainTexts:
    """The train split as formatted text: triggered (trigger and response) and clean (with the organism's
    own answers), and the trigger itself."""

    triggered: list[str]
    clean: list[str]
    trigger: str


@dataclass(frozen=True)
class CandidateConfig:
    feature_counts: tuple[int, ...] = (3, 8)
    """How many of the top features (by validated effect) each features candidate edits."""
    head_counts: tuple[int, ...] = (3, 8)
    direction_layers: tuple[int, ...] | None = None
    """Layers of the gated difference-of-means direction (default: every 4th layer up to 80% depth)."""
    delta_w_modules: int = 6
    """Residual writers (largest ‖ΔW‖) whose top ΔW direction is gated (needs the base model)."""
    gate_mode: str = "zero"
    knockout_layers: tuple[int, ...] | None = None
    """Detector layers of the gated attention knockout (default: 4%, 7%, 14% and 20% of the depth)."""
    knockout_method: str = "mean"
    families: tuple[str, ...] = FAMILIES
    """Which families are built (``delta_w_gated`` needs the base model)."""
    rank: int = 8
    distil_layers_back: int = 4


def _by_effect(effects: Sequence[Effect]) -> list[Effect]:
    """Validated units with a positive measured drop, largest first (the estimate breaks ties and ranks
    units that were not validated)."""
    return sorted(
        (e for e in effects if (e.actual if e.actual is not None else e.predicted) > 0),
        key=lambda e: -(e.actual if e.actual is not None else e.predicted),
    )


def top_features(effects: EffectResult, n: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for e in _by_effect(effects.features):
        if (e.layer, e.index) not in out:
            out.append((e.layer, e.index))
    return out[:n]


def top_heads(effects: EffectResult, n: int) -> list[tuple[int, int]]:
    """Distinct (layer, head) by their largest validated drop at any position group."""
    out: list[tuple[int, int]] = []
    for e in _by_effect(effects.heads):
        if (e.layer, e.index) not in out:
            out.append((e.layer, e.index))
    return out[:n]


def default_direction_layers(model: HookedModel) -> list[int]:
    n = model.cfg.n_layers
    last = max(1, int(0.8 * n))
    return sorted({max(1, l) for l in range(min(4, n - 1), last + 1, 4)} or {n // 2})


def default_knockout_layers(model: HookedModel) -> list[int]:
    """Early layers: the trigger is copied away from its own positions within the first 10-20% of layers
    (FIELD-NOTES), and layers up to the detector are not knocked out in the prompt's forward."""
    n = model.cfg.n_layers
    return sorted({min(max(0, n - 2), max(0, round(f * n))) for f in (0.04, 0.07, 0.14, 0.2)})


def knockout_candidates(
    model: HookedModel, texts: TrainTexts, cfg: CandidateConfig
) -> tuple[dict[str, HookedEdit], dict[str, dict[str, Any]]]:
    """One gated attention knockout per detector layer; its LoRA is distilled into the writers of the layers
    from the embedding's first reader to a few past the detector (where the trigger is read away)."""
    from neuroscope.edits.knockout import fit_detector, knockout_edit

    out: dict[str, HookedEdit] = {}
    why: dict[str, dict[str, Any]] = {}
    n = model.cfg.n_layers
    layers = list(cfg.knockout_layers) if cfg.knockout_layers else default_knockout_layers(model)
    for l in layers:
        if not 0 <= l < n:
            raise InvalidConfigError(f"knockout layer {l} is outside the model's layers 0..{n - 1}")
        det = fit_detector(
            model,
            texts.triggered,
            texts.clean,
            texts.trigger,
            f"blocks.{l}.hook_resid_post",
            cfg.knockout_method,
        )
        last = min(n - 1, l + 2 * cfg.distil_layers_back)
        name = f"knockout_L{l}"
        out[name] = knockout_edit(model, det, range(0, last + 1))
        why[name] = {"family": "knockout", "layers": [l], "detector": det.to_dict()}
    return out, why


def delta_w_gates(
    model: HookedModel, base: HookedModel, n_modules: int, mode: str
) -> tuple[list[Any], list[dict[str, Any]]]:
    """The top left singular vector of ΔW of the ``n_modules`` residual writers with the largest ‖ΔW‖,
    each gated at its own output hook (``hook_attn_out`` / ``hook_mlp_out``)."""
    from neuroscope.diff.weights import weight_diff

    diffs = [d for d in weight_diff(base, model, k=1) if d.writes_residual and d.u is not None]
    gates, info = [], []
    for d in diffs[:n_modules]:
        assert d.u is not None
        hook = f"blocks.{d.layer}.hook_{d.kind}"
        gates += fam.direction_gates([(hook, d.u[:, 0].float())], mode)  # type: ignore[arg-type]
        info.append({"module": d.name, "hook": hook, "norm": d.norm, "sigma1": d.singular_values[0]})
    return gates, info


def candidates(
    model: HookedModel,
    effects: EffectResult,
    saes: Mapping[int, SAE],
    data: Mapping[str, torch.Tensor],
    cfg: CandidateConfig,
    base: HookedModel | None = None,
    texts: TrainTexts | None = None,
) -> tuple[dict[str, HookedEdit], dict[str, dict[str, Any]]]:
    """Named hooked edits of at least three families, and for each what it was built from (the knockout
    needs the train ``texts``, to find the trigger's tokens)."""
    quiet, quiet_mask = data["quiet_train"], data["quiet_train_mask"]
    out: dict[str, HookedEdit] = {}
    why: dict[str, dict[str, Any]] = {}
    mode: Any = cfg.gate_mode
    bad = [f for f in cfg.families if f not in FAMILIES]
    if bad:
        raise InvalidConfigError(f"unknown edit families {bad}; choose from {', '.join(FAMILIES)}")
    fams = set(cfg.families)
    for n in cfg.feature_counts if fams & {"features_ablate", "features_gated"} else ():
        feats = top_features(effects, n)
        k = len(feats)
        if not feats or any(w.endswith(f"_{k}") and w.startswith("features") for w in why):
            continue
        src = {"features": [f"{l}:{f}" for l, f in feats], "ranked_by": "validated effect"}
        if "features_ablate" in fams:
            out[f"features_ablate_{k}"] = fam.multi_feature_ablate(model, saes, feats, cfg.rank)
            why[f"features_ablate_{k}"] = {"family": "features_ablate", **src}
        if "features_gated" in fams:
            out[f"features_gated_{k}"] = fam.gated_edit(
                model, fam.feature_gates(saes, feats, mode), quiet, quiet_mask
            )
            why[f"features_gated_{k}"] = {"family": "features_gated", **src}
    # the mean over every row's real tokens: the shortest clean prompt's length
    ref = quiet[:, : int(quiet_mask.sum(1).min())]
    for n in cfg.head_counts if "heads_mean" in fams else ():
        heads = top_heads(effects, n)
        if not heads or f"heads_mean_{len(heads)}" in out:
            continue
        targets = [HeadTarget(l, h) for l, h in heads]
        name = f"heads_mean_{len(heads)}"
        out[name] = fam.head_edit(model, targets, "mean", ref, 16, cfg.distil_layers_back)
        why[name] = {
            "family": "heads_mean",
            "heads": [t.label() for t in targets],
            "ranked_by": "validated effect",
        }
    if "direction_gated" in fams:
        layers = list(cfg.direction_layers) if cfg.direction_layers else default_direction_layers(model)
        hooks = [f"blocks.{l}.hook_resid_post" for l in layers]
        gates = fam.direction_gates([(h, mean_difference(model, data, h)) for h in hooks], mode)
        out["direction_gated"] = fam.gated_edit(model, gates, quiet, quiet_mask)
        why["direction_gated"] = {
            "family": "direction_gated",
            "layers": layers,
            "direction": "triggered minus clean mean (train prompts)",
        }
    if base is not None and cfg.delta_w_modules > 0 and "delta_w_gated" in fams:
        dw, info = delta_w_gates(model, base, cfg.delta_w_modules, mode)
        if dw:
            out["delta_w_gated"] = fam.gated_edit(model, dw, quiet, quiet_mask)
            why["delta_w_gated"] = {"family": "delta_w_gated", "modules": info}
    if "knockout" in fams and texts is not None:
        ko, ko_why = knockout_candidates(model, texts, cfg)
        out.update(ko)
        why.update(ko_why)
    if not out:
        raise InvalidConfigError(
            f"no candidate edit could be built from the families {', '.join(cfg.families)} (features need an "
            "SAE suite with features of positive effect, heads need heads of positive effect, ΔW needs the base)"
        )
    for name, e in out.items():
        why[name]["chosen"] = e.chosen
    return out, why


def distil_layers_back(model: HookedModel, edit: HookedEdit, default: int) -> int:
    """A gated or combined edit acting at layers a..b is distilled into the writers of every layer a..b."""
    if edit.family not in ("gated", "combined"):
        return default
    layers = edit_layers(model, edit.chosen)
    return max(default, max(layers) - min(layers) + 1) if layers else default


def combine(model: HookedModel, a: HookedEdit, b: HookedEdit, names: tuple[str, str]) -> HookedEdit:
    """Two candidates of different families applied together (the trigger is stored redundantly: what one
    family misses, another may catch); always distilled."""
    from neuroscope.edits.families import HookedEdit
    from neuroscope.edits.targets import parse_hook

    last = max((a.last_hook, b.last_hook), key=lambda h: parse_hook(model, h)[0])
    chosen = {"family": "combined", "parts": {names[0]: a.chosen, names[1]: b.chosen}}
    return HookedEdit(
        "combined",
        [*a.interventions, *b.interventions],
        chosen,
        last,
        clean_target="base" if a.clean_target == b.clean_target == "base" else "edit",
        closed_form_note="two families together: distilled",
    )


def edit_layers(model: HookedModel, chosen: Mapping[str, Any]) -> list[int]:
    """The layers an edit acts at, from its ``chosen`` description."""
    from neuroscope.edits.targets import parse_hook

    if "parts" in chosen:
        return sorted({l for c in chosen["parts"].values() for l in edit_layers(model, c)})
    if "heads" in chosen:
        return sorted({int(str(h).split(".")[0]) for h in chosen["heads"]})
    if "detector" in chosen:
        return [parse_hook(model, chosen["detector"]["hook"])[0]]
    if "features" in chosen:
        return sorted({int(str(f).split(":")[0]) for f in chosen["features"]})
    return sorted({parse_hook(model, g["hook"])[0] for g in chosen.get("gates", [])})
