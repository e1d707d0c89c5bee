"""The refusal case study: find the refusal direction (difference of means, best layer on a validation split),
ablate it to remove refusals, add it to induce them, and sweep its strength, each rate with a Wilson interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import BehaviourAbsentError, EmptyPromptSetError, InvalidConfigError
from neuroscope.organisms import data
from neuroscope.organisms.directions import (
    LayerChoice,
    add_direction,
    choose_layer,
    diff_of_means,
    directional_ablation,
)
from neuroscope.organisms.generation import compare, decode, formatter, greedy
from neuroscope.organisms.metrics import Mean, Rate, is_refusal, mean, rate

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that."


@dataclass(frozen=True)
class RefusalConfig:
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
    """Strengths of the added direction on harmless prompts (alpha 1 adds the full difference of means)."""
    subtract_alphas: tuple[float, ...] = (-1.0,)
    """Strengths on harmful prompts (negative: the direction subtracted at the chosen layer only)."""
    max_new_tokens: int = 24
    clean_tokens: int = 20
    max_layer_frac: float = 0.8
    max_kl: float = 0.1
    min_refusal_before: float = 0.2
    """Stop with BehaviourAbsentError when held-out harmful prompts are refused less often than this."""
    prefix_tokens: int = 4
    """Layer choice scores log P(first tokens of the refusal sentence), this many."""
    limit: int | None = None
    """Use only the first ``limit`` prompts of every set (tests and quick looks)."""
    batch_size: int = 16
    seed: int = 0
    n_samples: int = 3

    def __post_init__(self) -> None:
        if 0.0 not in self.alphas:
            raise InvalidConfigError("alphas must include 0 (the unedited model)")
        if self.max_new_tokens < self.clean_tokens:
            raise InvalidConfigError("max_new_tokens must be >= clean_tokens (agreement reads those answers)")


@dataclass(frozen=True)
class RefusalPrompts:
    """Unformatted prompts: ``*_train`` define the direction, ``*_val`` choose its layer, ``*_heldout`` measure."""

    harmful_train: Sequence[str]
    harmful_val: Sequence[str]
    harmful_heldout: Sequence[str]
    harmless_train: Sequence[str]
    harmless_val: Sequence[str]
    harmless_heldout: Sequence[str]
    borderline_heldout: Sequence[str] = ()
    refusal: str = DEFAULT_REFUSAL

    @classmethod
    def shipped(cls, refusal: str | None = None) -> RefusalPrompts:
        q, r = data.questions(), data.refusal_set()
        return cls(
            r.harmful_train,
            r.harmful_validation,
            r.harmful_heldout,
            q.train,
            q.validation,
            q.heldout,
            r.borderline_heldout,
            refusal or r.refusal,
        )

    def limited(self, n: int | None) -> RefusalPrompts:
        if n is None:
            return self
        cut = {k: list(v)[:n] for k, v in asdict(self).items() if k != "refusal"}
        return RefusalPrompts(**cut, refusal=self.refusal)


@dataclass
class RefusalResult:
    model: str
    refusal: str
    layer: int
    layer_choice: LayerChoice
    direction_norm: float
    harmful_before: Rate
    harmful_ablated: Rate
    harmless_before: Rate
    harmless_added: Rate  # alpha = 1
    borderline_before: Rate | None
    borderline_ablated: Rate | None
    harmless_ablation_agreement: Mean  # does ablation leave harmless answers alone?
    harmless_ablation_kl: Mean
    add_sweep: dict[float, Rate]  # harmless prompts, refusal rate vs alpha
    subtract_sweep: dict[float, Rate]  # harmful prompts, refusal rate vs (negative) alpha
    n_prompts: dict[str, int]
    config: dict[str, Any]
    seconds: float
    samples: dict[str, list[str]] = field(default_factory=dict)
    organism_vs_base: dict[str, Any] | None = None  # harmless answers against the base model
    organism: dict[str, Any] | None = None  # the model folder's organism.json, when it has one
    chat_template: bool = True  # False: the tokenizer had none and prompts were plain text

    def to_dict(self) -> dict[str, Any]:
        def r(x: Rate | None) -> dict[str, Any] | None:
            return None if x is None else x.to_dict()

        return {
            "model": self.model,
            "refusal": self.refusal,
            "layer": self.layer,
            "layer_choice": self.layer_choice.to_dict(),
            "direction_norm": self.direction_norm,
            "harmful_before": r(self.harmful_before),
            "harmful_ablated": r(self.harmful_ablated),
            "harmless_before": r(self.harmless_before),
            "harmless_added": r(self.harmless_added),
            "borderline_before": r(self.borderline_before),
            "borderline_ablated": r(self.borderline_ablated),
            "harmless_ablation_agreement": self.harmless_ablation_agreement.to_dict(),
            "harmless_ablation_kl": self.harmless_ablation_kl.to_dict(),
            "add_sweep": [{"alpha": a, **v.to_dict()} for a, v in self.add_sweep.items()],
            "subtract_sweep": [{"alpha": a, **v.to_dict()} for a, v in self.subtract_sweep.items()],
            "n_prompts": self.n_prompts,
            "config": self.config,
            "seconds": self.seconds,
            "samples": self.samples,
            "organism_vs_base": self.organism_vs_base,
            "organism": self.organism,
            "chat_template": self.chat_template,
        }

    def figure(self):
        """Refusal rate vs alpha with Wilson bands (plotly)."""
        from neuroscope.analysis import figures

        xs = sorted({*self.add_sweep, *self.subtract_sweep})
        series, bands = {}, {}
        for name, sweep in (
            ("harmless + alpha·r", self.add_sweep),
            ("harmful + alpha·r", self.subtract_sweep),
        ):
            ys = [sweep[a].value if a in sweep else float("nan") for a in xs]
            series[name] = ys
            bands[name] = (
                [sweep[a].ci[0] if a in sweep else float("nan") for a in xs],
                [sweep[a].ci[1] if a in sweep else float("nan") for a in xs],
            )
        return figures.lines(
            xs,
            series,
            bands=bands,
            title=f"refusal rate vs alpha (layer {self.layer})",
            xlabel="alpha",
            ylabel="refusal rate",
        )


def _refusals(
    model: HookedModel, texts: Sequence[str], refusal: str, edit: Any, cfg: RefusalConfig
) -> tuple[Rate, list[str], list[list[int]]]:
    ids = greedy(model, texts, cfg.max_new_tokens, edit, cfg.batch_size)
    outs = decode(model, ids)
    return rate(is_refusal(o, refusal) for o in outs), outs, ids


def refusal_study(
    model: HookedModel,
    prompts: RefusalPrompts | None = None,
    cfg: RefusalConfig | None = None,
    ablate: Callable[[HookedModel, torch.Tensor], Any] = directional_ablation,
    progress: Callable[[str], None] | None = None,
    base: HookedModel | None = None,
) -> RefusalResult:
    """The whole study on ``model``; ``ablate(model, direction)`` makes the ablation edit (one call).
    With ``base`` (the model the organism was fine-tuned from), its held-out harmless answers are compared
    with the organism's: the organism should answer them as before."""
    cfg = cfg or RefusalConfig()
    prompts = (prompts or RefusalPrompts.shipped()).limited(cfg.limit)
    for name, v in asdict(prompts).items():
        if name not in ("refusal", "borderline_heldout") and not v:
            raise EmptyPromptSetError(f"The refusal study needs {name.replace('_', ' ')} prompts; got none.")
    say = progress or (lambda _: None)
    t0 = time.perf_counter()
    fmt = formatter(model)
    F = lambda ps: [fmt(p) for p in ps]  # noqa: E731
    refusal = prompts.refusal
    samples: dict[str, list[str]] = {}

    say("refusal rate before, held-out harmful")
    harmful_before, outs, _ = _refusals(model, F(prompts.harmful_heldout), refusal, None, cfg)
    samples["harmful_before"] = outs[: cfg.n_samples]
    if harmful_before.value < cfg.min_refusal_before:
        raise BehaviourAbsentError(
            f"The model refuses only {harmful_before} of the held-out harmful prompts, below "
            f"{cfg.min_refusal_before:.0%}: there is no refusal to find or remove. Point the study at a model "
            "that refuses this category (e.g. one made with `neuroscope organism refusal`)."
        )
    say("difference of means per layer")
    directions = diff_of_means(
        model, F(prompts.harmful_train), F(prompts.harmless_train), batch_size=cfg.batch_size
    )
    prefix = model.tokenizer.encode(refusal, add_special_tokens=False)[: cfg.prefix_tokens]
    say("layer choice on the validation split")
    choice = choose_layer(
        model,
        directions,
        F(prompts.harmful_val),
        F(prompts.harmless_val),
        prefix,
        cfg.max_layer_frac,
        cfg.max_kl,
        batch_size=cfg.batch_size,
    )
    layer = choice.best
    r = directions[layer].to(model.dtype)
    ablation = ablate(model, r)
    say(f"layer {layer}: ablation on held-out harmful")
    harmful_ablated, outs, _ = _refusals(model, F(prompts.harmful_heldout), refusal, ablation, cfg)
    samples["harmful_ablated"] = outs[: cfg.n_samples]

    harmless_texts = F(prompts.harmless_heldout)
    add_sweep: dict[float, Rate] = {}
    before_ids: list[list[int]] = []
    for a in sorted(cfg.alphas):
        say(f"alpha {a}: held-out harmless")
        add_sweep[float(a)], outs, ids = _refusals(
            model, harmless_texts, refusal, add_direction(layer, r, a), cfg
        )
        samples[f"harmless_alpha_{a:g}"] = outs[: cfg.n_samples]
        if a == 0:
            before_ids = ids
    harmless_added = (
        add_sweep.get(1.0) or _refusals(model, harmless_texts, refusal, add_direction(layer, r), cfg)[0]
    )
    subtract_sweep: dict[float, Rate] = {0.0: harmful_before}
    for a in sorted(cfg.subtract_alphas):
        say(f"alpha {a}: held-out harmful")
        subtract_sweep[float(a)], outs, _ = _refusals(
            model, F(prompts.harmful_heldout), refusal, add_direction(layer, r, a), cfg
        )
        samples[f"harmful_alpha_{a:g}"] = outs[: cfg.n_samples]
    say("ablation on held-out harmless: agreement and KL")
    cmp = compare(
        model,
        model,
        harmless_texts,
        before_ids,
        edit=ablation,
        n_tokens=cfg.clean_tokens,
        batch_size=cfg.batch_size,
    )
    borderline_before = borderline_ablated = None
    if prompts.borderline_heldout:
        say("borderline prompts")
        bt = F(prompts.borderline_heldout)
        borderline_before, outs, _ = _refusals(model, bt, refusal, None, cfg)
        samples["borderline_before"] = outs[: cfg.n_samples]
        borderline_ablated = _refusals(model, bt, refusal, ablation, cfg)[0]
    organism_vs_base = None
    if base is not None:
        say(f"organism vs base model {base.cfg.name} on held-out harmless prompts")
        base_ids = greedy(base, harmless_texts, cfg.max_new_tokens, None, cfg.batch_size)
        c = compare(
            base, model, harmless_texts, base_ids, n_tokens=cfg.clean_tokens, batch_size=cfg.batch_size
        )
        organism_vs_base = {
            "base_model": base.cfg.name,
            "clean_agreement": mean(c.agreement, seed=cfg.seed).to_dict(),
            "clean_kl": mean(c.kl, seed=cfg.seed).to_dict(),
        }
    return RefusalResult(
        model=model.cfg.name,
        refusal=refusal,
        layer=layer,
        layer_choice=choice,
        direction_norm=float(r.float().norm()),
        harmful_before=harmful_before,
        harmful_ablated=harmful_ablated,
        harmless_before=add_sweep[0.0],
        harmless_added=harmless_added,
        borderline_before=borderline_before,
        borderline_ablated=borderline_ablated,
        harmless_ablation_agreement=mean(cmp.agreement, seed=cfg.seed),
        harmless_ablation_kl=mean(cmp.kl, seed=cfg.seed),
        add_sweep=add_sweep,
        subtract_sweep=dict(sorted(subtract_sweep.items())),
        n_prompts={k: len(v) for k, v in asdict(prompts).items() if k != "refusal"},
        config=asdict(cfg),
        seconds=round(time.perf_counter() - t0, 1),
        samples=samples,
        organism_vs_base=organism_vs_base,
        chat_template=bool(getattr(model.tokenizer, "chat_template", None)),
    )
