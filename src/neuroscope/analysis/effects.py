"""Causal localisation of a triggered behaviour: rank SAE features, attention heads (per position group) and
MLP neurons by their effect on the response's log-probability, then check the top candidates by really
intervening on a validation split.

Estimates are attribution patching (first order): one forward of the clean rows, one forward and one
backward of the triggered rows give every unit's estimate at once.

- heads (``attn.hook_z``, per position group) and neurons (``mlp.hook_post``): (triggered − clean) ·
  ∂metric/∂activation, the predicted drop when the unit takes its clean value;
- SAE features: ``ablate`` (default) z_f · (W_dec[f] · ∂metric/∂x), the predicted drop when the feature's
  contribution is removed from the residual stream (what a feature edit does), or ``patch``:
  (z_f(triggered) − z_f(clean)) · (W_dec[f] · ∂metric/∂x).

Effects are *drops* of the behaviour metric on triggered prompts (``EffectConfig.metric``; default the
response token's logit minus the clean answer's, which does not saturate the way log p does on a well-trained
organism: see :mod:`neuroscope.analysis.behaviour`): positive means the unit carries the behaviour. A feature's AUROC (max activation, triggered vs clean counterparts) is
reported beside its effect: detection is not causation, and the two rankings differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import torch

from neuroscope.analysis.behaviour import (
    GROUPS,
    METRICS,
    BehaviourPairs,
    behaviour_metric,
    run_metric,
    with_clean_answer,
)
from neuroscope.errors import InvalidConfigError
from neuroscope.models.quantize import require_gradients

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

KINDS = ("feature", "head", "neuron")


@dataclass(frozen=True)
class EffectConfig:
    validation: float = 0.3
    """Fraction of the pairs held out to validate the top candidates by real intervention."""
    top: int = 10
    """Candidates per kind that are kept and validated."""
    feature_mode: Literal["ablate", "patch"] = "ablate"
    kinds: tuple[str, ...] = KINDS
    batch_size: int = 8
    seed: int = 0
    metric: str = "logit_diff"
    """The behaviour metric estimates and interventions are measured in (one of ``behaviour.METRICS``)."""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidConfigError(f"unknown behaviour metric {self.metric!r}; choose from {METRICS}")
        if not 0 < self.validation < 1:
            raise InvalidConfigError(f"validation must be in (0, 1), got {self.validation}")
        if self.top < 1 or self.batch_size < 1:
            raise InvalidConfigError("top and batch_size must be >= 1")
        if self.feature_mode not in ("ablate", "patch"):
            raise InvalidConfigError(f"feature_mode must be 'ablate' or 'patch', got {self.feature_mode!r}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise InvalidConfigError(f"unknown kinds {bad}; choose from {KINDS}")


@dataclass(frozen=True)
class Effect:
    kind: str  # feature | head | neuron
    layer: int
    index: int  # the feature, head or neuron
    group: str  # position group of a head; "all" for features and neurons
    hook: str
    predicted: float  # attribution estimate of the metric drop, on the train split
    predicted_val: float  # the same estimate on the validation split
    actual: float | None  # the drop measured by intervening, on the validation split
    auroc: float | None = None  # features: max activation, triggered vs clean counterparts (all pairs)

    @property
    def label(self) -> str:
        g = "" if self.group == "all" else f"@{self.group}"
        return f"{self.kind[0].upper()}{self.layer}.{self.index}{g}"


@dataclass
class EffectResult:
    metric_triggered: float  # the mean behaviour metric (config["metric"]), train split
    metric_clean: float
    n_train: int
    n_validation: int
    config: dict[str, Any]
    features: list[Effect] = field(default_factory=list)
    heads: list[Effect] = field(default_factory=list)
    neurons: list[Effect] = field(default_factory=list)
    # feature effects per SAE layer, every feature (train split): for rankings beside AUROC
    feature_scores: dict[int, list[float]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("feature_scores",)}
        for kind in ("features", "heads", "neurons"):
            d[kind] = [{**asdict(e), "label": e.label} for e in getattr(self, kind)]
        return d

    def figure(self) -> Any:
        """Predicted against measured drop of every validated candidate (the identity line is a perfect
        first-order estimate)."""
        import plotly.graph_objects as go

        fig = go.Figure()
        lim = 0.0
        for kind in ("features", "heads", "neurons"):
            es = [e for e in getattr(self, kind) if e.actual is not None]
            if not es:
                continue
            xs, ys = [e.predicted_val for e in es], [float(e.actual or 0.0) for e in es]
            lim = max(lim, *map(abs, xs), *map(abs, ys))
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=kind, text=[e.label for e in es]))
        fig.add_trace(
            go.Scatter(x=[-lim, lim], y=[-lim, lim], mode="lines", line={"dash": "dot"}, name="y = x")
        )
        fig.update_layout(
            title=f"Causal effect on the behaviour ({self.config.get('metric', 'logit_diff')}, triggered): "
            "attribution estimate vs intervention",
            xaxis_title="predicted drop (validation split)",
            yaxis_title="measured drop (validation split)",
        )
        return fig


def _editable(real: torch.Tensor) -> torch.Tensor:
    """Real positions a feature edit acts on: position 0 (the attention sink, which SAEs are not trained
    on and edits never touch; see ``neuroscope.edits.reference``) left out."""
    from neuroscope.edits.reference import FIRST_EDITABLE_POS

    out = real.clone()
    out[:, :FIRST_EDITABLE_POS] = False
    return out


def _names(model: HookedModel, saes: Mapping[int, SAE], kinds: Sequence[str]) -> dict[str, str]:
    out = {}
    for layer, sae in saes.items():
        if "feature" in kinds:
            out[f"sae{layer}"] = model.resolve_hook_name(sae.cfg.hook_name)
    for l in range(model.cfg.n_layers):
        if "head" in kinds:
            out[f"z{l}"] = f"blocks.{l}.attn.hook_z"
        if "neuron" in kinds:
            out[f"post{l}"] = f"blocks.{l}.mlp.hook_post"
    return out


def _attribute(
    model: HookedModel, b: BehaviourPairs, names: Mapping[str, str], metric: str
) -> dict[str, tuple]:
    """Per site: (triggered activation, clean activation, gradient of the summed metric), all detached."""
    dev = model.device
    uniq = sorted(set(names.values()))
    mask = b.mask.to(dev)
    with torch.no_grad():
        _, clean = model.run_with_cache(b.clean.to(dev), names=uniq, attention_mask=mask)
    probes: dict[str, torch.Tensor] = {}

    def add_probe(x: torch.Tensor, hook: Any) -> torch.Tensor:
        probes[hook.name] = torch.zeros_like(x, requires_grad=True)
        return x + probes[hook.name]

    with torch.inference_mode(False), torch.enable_grad():
        logits, trig = model.run_with_cache(
            b.triggered.to(dev), names=uniq, fwd_hooks=[(n, add_probe) for n in uniq], attention_mask=mask
        )
        assert logits is not None
        total = behaviour_metric(b, logits, metric).sum()
        grads = torch.autograd.grad(total, [probes[n] for n in uniq])
    g = dict(zip(uniq, grads, strict=True))
    real = b.mask.to(dev).bool()
    return {n: (trig[n].detach().float(), clean[n].float(), g[n].detach().float(), real) for n in uniq}


def _estimates(
    model: HookedModel, pairs: BehaviourPairs, saes: Mapping[int, SAE], cfg: EffectConfig
) -> tuple[dict[str, torch.Tensor], dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Summed (over rows) predicted drops: ``sae{l}`` [d_sae], ``z{l}`` [group, head], ``post{l}`` [d_mlp];
    and per SAE layer the max activations of every feature (triggered, clean) for the AUROC."""
    names = _names(model, saes, cfg.kinds)
    tot: dict[str, torch.Tensor] = {}
    maxes: dict[int, tuple[list, list]] = {l: ([], []) for l in saes}
    for b in pairs.batches(cfg.batch_size):
        site = _attribute(model, b, names, cfg.metric)
        for key, name in names.items():
            a_t, a_c, g, real = site[name]
            if key.startswith("sae"):
                layer = int(key[3:])
                sae = saes[layer]
                real = _editable(real)
                with torch.no_grad():
                    z_t, z_c = sae.encode(a_t), sae.encode(a_c)
                    proj = g @ sae.W_dec.float().T  # [b, p, d_sae]: W_dec[f] · grad
                    dz = z_t if cfg.feature_mode == "ablate" else z_t - z_c
                    val = (dz * proj * real[..., None]).sum((0, 1))
                    zero = torch.zeros((), dtype=z_t.dtype)
                    maxes[layer][0].append(torch.where(real[..., None], z_t, zero).amax(1).cpu())
                    maxes[layer][1].append(torch.where(real[..., None], z_c, zero).amax(1).cpu())
            elif key.startswith("z"):
                d = ((a_t - a_c) * g).sum(-1) * real[..., None]  # [b, p, head]
                val = torch.stack([(d * b.groups[gr].to(d.device)[..., None]).sum((0, 1)) for gr in GROUPS])
            else:
                val = ((a_t - a_c) * g * real[..., None]).sum((0, 1))
            tot[key] = tot.get(key, 0) + val.cpu()
    acts = {l: (torch.cat(t), torch.cat(c)) for l, (t, c) in maxes.items()}
    n = len(pairs)
    return {k: v / n for k, v in tot.items()}, acts


def _top(est: dict[str, torch.Tensor], prefix: str, k: int) -> list[tuple[int, int, int, float]]:
    """(layer, group index or -1, unit, estimate) of the ``k`` largest estimates over layers."""
    rows: list[tuple[int, int, int, float]] = []
    for key, v in est.items():
        if not key.startswith(prefix) or not key[len(prefix) :].isdigit():
            continue
        layer = int(key[len(prefix) :])
        flat = v.flatten()
        kk = min(k, flat.numel())
        vals, idx = flat.topk(kk)
        for val, i in zip(vals.tolist(), idx.tolist(), strict=True):
            if v.ndim == 2:
                rows.append((layer, i // v.shape[1], i % v.shape[1], val))
            else:
                rows.append((layer, -1, i, val))
    return sorted(rows, key=lambda r: -r[3])[:k]


def _validate(
    model: HookedModel,
    val: BehaviourPairs,
    base: torch.Tensor,
    saes: Mapping[int, SAE],
    kind: str,
    layer: int,
    group: int,
    unit: int,
    cfg: EffectConfig,
) -> float:
    """The measured drop of the mean metric on ``val`` when the unit is intervened on."""
    dev = model.device
    if kind == "feature":
        sae = saes[layer]
        name = model.resolve_hook_name(sae.cfg.hook_name)
        w = sae.W_dec[unit].detach()
        clean_z: list[torch.Tensor] = []
        if cfg.feature_mode == "patch":
            for b in val.batches(cfg.batch_size):
                with torch.no_grad():
                    _, c = model.run_with_cache(b.clean.to(dev), names=[name], attention_mask=b.mask.to(dev))
                clean_z.append(sae.encode(c[name].float())[..., unit])
        it = iter(clean_z)

        def hooks(b: BehaviourPairs) -> list:
            cz = next(it) if clean_z else None

            def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                z = sae.encode(x.float())[..., unit]
                if cz is not None:
                    z = z - cz
                keep = _editable(b.mask.to(x.device).bool())[..., None]
                return x - (z[..., None] * w.float() * keep).to(x.dtype)

            return [(name, fn)]

    else:
        name = f"blocks.{layer}.attn.hook_z" if kind == "head" else f"blocks.{layer}.mlp.hook_post"

        def hooks(b: BehaviourPairs) -> list:
            with torch.no_grad():
                _, c = model.run_with_cache(b.clean.to(dev), names=[name], attention_mask=b.mask.to(dev))
            src = c[name]
            if kind == "head":
                where = b.groups[GROUPS[group]].to(dev)

                def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                    x = x.clone()
                    x[..., unit, :] = torch.where(where[..., None], src[..., unit, :], x[..., unit, :])
                    return x

            else:

                def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                    x = x.clone()
                    x[..., unit] = src[..., unit]
                    return x

            return [(name, fn)]

    after = run_metric(model, val, "triggered", hooks, batch_size=cfg.batch_size, metric=cfg.metric)
    return float((base - after).mean())


def rank_effects(
    model: HookedModel,
    pairs: BehaviourPairs,
    saes: Mapping[int, SAE] | None = None,
    cfg: EffectConfig | None = None,
    validation: BehaviourPairs | None = None,
) -> EffectResult:
    """Rank features (of every SAE in ``saes``, keyed by layer), heads per position group and neurons by
    their estimated effect on the train split; validate the top ``cfg.top`` of each kind by intervening
    on the validation split: ``validation`` when given (then ``pairs`` is all train), else a seeded
    ``cfg.validation`` fraction of ``pairs``."""
    from neuroscope.sae.contrast import auroc

    cfg = cfg or EffectConfig()
    saes = dict(saes or {})
    require_gradients(model, "causal effect ranking")
    if cfg.metric == "logit_diff":
        pairs = pairs if pairs.alt is not None else with_clean_answer(model, pairs, cfg.batch_size)
        if validation is not None and validation.alt is None:
            validation = with_clean_answer(model, validation, cfg.batch_size)
    train, val = (pairs, validation) if validation is not None else pairs.split(cfg.validation, cfg.seed)
    est, acts = _estimates(model, train, saes, cfg)
    est_val, acts_val = _estimates(model, val, saes, cfg)
    m_trig = run_metric(model, train, "triggered", batch_size=cfg.batch_size, metric=cfg.metric)
    m_clean = run_metric(model, train, "clean", batch_size=cfg.batch_size, metric=cfg.metric)
    base_val = run_metric(model, val, "triggered", batch_size=cfg.batch_size, metric=cfg.metric)
    aurocs = {
        l: auroc(torch.cat([acts[l][0], acts_val[l][0]]), torch.cat([acts[l][1], acts_val[l][1]]))
        for l in saes
    }
    result = EffectResult(
        float(m_trig.mean()),
        float(m_clean.mean()),
        len(train),
        len(val),
        asdict(cfg),
        feature_scores={l: est[f"sae{l}"].tolist() for l in saes if f"sae{l}" in est},
    )
    for kind, prefix, attr in (
        ("feature", "sae", "features"),
        ("head", "z", "heads"),
        ("neuron", "post", "neurons"),
    ):
        if kind not in cfg.kinds:
            continue
        out = []
        for layer, gi, unit, val_est in _top(est, prefix, cfg.top):
            pv = est_val[f"{prefix}{layer}"]
            pred_val = float(pv[gi, unit] if gi >= 0 else pv[unit])
            actual = _validate(model, val, base_val, saes, kind, layer, gi, unit, cfg)
            hook = (
                model.resolve_hook_name(saes[layer].cfg.hook_name)
                if kind == "feature"
                else f"blocks.{layer}.attn.hook_z"
                if kind == "head"
                else f"blocks.{layer}.mlp.hook_post"
            )
            out.append(
                Effect(
                    kind,
                    layer,
                    unit,
                    GROUPS[gi] if gi >= 0 else "all",
                    hook,
                    round(val_est, 6),
                    round(pred_val, 6),
                    round(actual, 6),
                    round(float(aurocs[layer][unit]), 4) if kind == "feature" else None,
                )
            )
        setattr(result, attr, out)
    return result


def feature_effects(
    model: HookedModel, pairs: BehaviourPairs, saes: Mapping[Any, SAE], cfg: EffectConfig | None = None
) -> dict[Any, torch.Tensor]:
    """Every feature's estimated effect (``[d_sae]`` per SAE, keyed as ``saes``; mean over ``pairs``), with no
    split and no validation: for one prompt in the workbench, where :func:`rank_effects` has nothing to hold
    out. Same estimates as :func:`rank_effects` on the same pairs."""
    cfg = replace(cfg or EffectConfig(), kinds=("feature",))
    require_gradients(model, "causal effect ranking")
    if cfg.metric == "logit_diff" and pairs.alt is None:
        pairs = with_clean_answer(model, pairs, cfg.batch_size)
    keys = list(saes)
    est, _ = _estimates(model, pairs, {i: saes[k] for i, k in enumerate(keys)}, cfg)
    return {k: est[f"sae{i}"] for i, k in enumerate(keys)}
