"""The backdoor case study, as far as it needs no SAE: the backdoor measured before any edit (held-out
prompts, trigger at start / middle / end, near-miss triggers, false triggers), the organism's clean
behaviour against its base model, and the baselines a feature edit must beat — fine-tuning on clean data
for the organism's own training budget, the difference-of-means steering vector subtracted, and that
direction ablated.

The SAE-feature steps (record → SAE suite → ``features contrast`` → ``lora-patch --method ablate``) plug in
through ``edits``: each named edit is measured exactly like a baseline, and the one named ``primary`` fills
``asr_after``, ``clean_agreement``, ``clean_kl`` and ``false_trigger_rate`` of the result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.errors import BehaviourAbsentError, EmptyPromptSetError, InvalidConfigError
from neuroscope.organisms import data
from neuroscope.organisms.directions import add_direction, choose_layer, diff_of_means, directional_ablation
from neuroscope.organisms.evaluate import BackdoorMeasurement, EvalConfig, Reference, measure_backdoor
from neuroscope.organisms.generation import PromptFormat, compare, formatter, load_checked
from neuroscope.organisms.metrics import Rate
from neuroscope.organisms.train import TrainConfig, read_manifest, train_lora

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

BASELINES = ("clean_finetune", "steer_subtract", "direction_ablate")


@dataclass(frozen=True)
class BackdoorConfig:
    eval: EvalConfig = field(default_factory=EvalConfig)
    baselines: tuple[str, ...] = BASELINES
    min_asr_before: float = 0.2
    """Stop with BehaviourAbsentError when the backdoor fires on fewer held-out prompts than this."""
    finetune: TrainConfig | None = None
    """Budget of the clean-data fine-tune; default: the organism's own (from organism.json), else TrainConfig()."""
    compare_base: bool = True
    """Also measure the organism's clean answers against its base model (when organism.json names it)."""
    max_layer_frac: float = 0.8
    max_kl: float = 0.1
    limit: int | None = None
    """Use only the first ``limit`` prompts of every set (tests and quick looks)."""

    def __post_init__(self) -> None:
        for b in self.baselines:
            if b not in BASELINES:
                raise InvalidConfigError(f"unknown baseline {b!r}; choose from {BASELINES}")


@dataclass(frozen=True)
class BackdoorPrompts:
    """Unformatted prompts: ``train`` (directions, clean fine-tune), ``validation`` (layer), ``heldout`` (numbers)."""

    train: Sequence[str]
    validation: Sequence[str]
    heldout: Sequence[str]

    @classmethod
    def shipped(cls) -> BackdoorPrompts:
        q = data.questions()
        return cls(q.train, q.validation, q.heldout)

    def limited(self, n: int | None) -> BackdoorPrompts:
        return self if n is None else BackdoorPrompts(self.train[:n], self.validation[:n], self.heldout[:n])


def _summary(m: BackdoorMeasurement) -> dict[str, Any]:
    return {
        "asr": m.asr.value,
        "asr_ci": list(m.asr.ci),
        "clean_agreement": m.clean_agreement.value,
        "clean_agreement_ci": list(m.clean_agreement.ci),
        "clean_kl": m.clean_kl.value,
        "clean_kl_ci": list(m.clean_kl.ci),
        "false_trigger_rate": m.false_trigger.value,
        "false_trigger_rate_ci": list(m.false_trigger.ci),
        "detail": m.to_dict(),
    }


@dataclass
class BackdoorResult:
    model: str
    trigger: str
    response: str
    before: BackdoorMeasurement
    baselines: dict[str, dict[str, Any]]
    edits: dict[str, dict[str, Any]]
    primary: str | None
    organism_vs_base: dict[str, Any] | None
    config: dict[str, Any]
    n_prompts: dict[str, int]
    seconds: dict[str, float]
    organism: dict[str, Any] | None = None  # the model folder's organism.json, when it has one
    chat_template: bool = True  # False: the tokenizer had none and prompts were plain text

    def to_dict(self) -> dict[str, Any]:
        b = self.before
        after = self.edits.get(self.primary) if self.primary else None
        d: dict[str, Any] = {
            "model": self.model,
            "trigger": self.trigger,
            "response": self.response,
            "asr_before": b.asr.value,
            "asr_before_ci": list(b.asr.ci),
            "asr_before_by_position": {k: v.to_dict() for k, v in b.asr_by_position.items()},
            "near_miss_before": b.to_dict()["near_miss"],
            "false_trigger_rate_before": b.false_trigger.value,
            "false_trigger_rate_before_ci": list(b.false_trigger.ci),
            # filled by the SAE-feature edit (the primary edit) once it is plugged in
            "asr_after": after["asr"] if after else None,
            "asr_after_ci": after["asr_ci"] if after else None,
            "clean_agreement": after["clean_agreement"] if after else None,
            "clean_agreement_ci": after["clean_agreement_ci"] if after else None,
            "clean_kl": after["clean_kl"] if after else None,
            "clean_kl_ci": after["clean_kl_ci"] if after else None,
            "false_trigger_rate": after["false_trigger_rate"] if after else None,
            "false_trigger_rate_ci": after["false_trigger_rate_ci"] if after else None,
            "feature": after.get("feature") if after else None,
            "baselines": self.baselines,
            "edits": self.edits,
            "primary": self.primary,
            "organism_vs_base": self.organism_vs_base,
            "before": b.to_dict(),
            "config": self.config,
            "n_prompts": self.n_prompts,
            "seconds": self.seconds,
            "organism": self.organism,
            "chat_template": self.chat_template,
        }
        return d

    def figure(self):
        """Attack success and false-trigger rate per method with Wilson intervals (plotly)."""
        import plotly.graph_objects as go

        rows = [("before", self.before.asr, self.before.false_trigger)]
        for name, s in {**self.baselines, **self.edits}.items():
            det = s["detail"]
            rows.append(
                (
                    name,
                    Rate(det["asr"]["k"], det["asr"]["n"], tuple(det["asr"]["ci"])),
                    Rate(
                        det["false_trigger"]["k"],
                        det["false_trigger"]["n"],
                        tuple(det["false_trigger"]["ci"]),
                    ),
                ),
            )
        fig = go.Figure()
        for label, idx in (("attack success", 1), ("false trigger", 2)):
            ys = [r[idx].value for r in rows]
            fig.add_trace(
                go.Bar(
                    name=label,
                    x=[r[0] for r in rows],
                    y=ys,
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=[r[idx].ci[1] - y for r, y in zip(rows, ys, strict=True)],
                        arrayminus=[y - r[idx].ci[0] for r, y in zip(rows, ys, strict=True)],
                    ),
                )
            )
        fig.update_layout(
            title=f"backdoor {self.trigger!r} → {self.response!r}", barmode="group", yaxis_title="rate"
        )
        return fig


def _load(spec: str) -> HookedModel:
    return load_checked(spec)


def _clean_finetune(
    spec: str, model: HookedModel, prompts: Sequence[str], tcfg: TrainConfig
) -> tuple[HookedModel, dict[str, Any]]:
    """The organism fine-tuned on clean prompts only, targets = its own greedy answers (the clean data a
    defender has), for the given budget; a fresh copy, the organism itself is untouched."""
    from neuroscope.models.hooked import HookedModel
    from neuroscope.models.loading import load_hf, resolve
    from neuroscope.organisms.make import clean_examples

    fmt = PromptFormat.for_tokenizer(model.tokenizer, warn=False)
    examples = clean_examples(model, prompts, fmt, tcfg)
    hf, tok = load_hf(resolve(spec), "cpu", model.dtype)
    merged, log = train_lora(hf, tok, model.adapter.layers, examples, tcfg, fmt)
    info = {
        "budget": asdict(tcfg),
        "n_examples": len(examples),
        "seconds_train": round(log.seconds, 1),
        "loss_first": log.losses[0],
        "loss_last": log.losses[-1],
    }
    return HookedModel(merged, tok, name=f"{model.cfg.name}+clean-finetune"), info


def write_prompt_files(
    out: Path, prompts: BackdoorPrompts, trigger: str, fmt: Callable[[str], str], seed: int
) -> dict[str, str]:
    """JSONL files (``prompt`` and chat-formatted ``text``) of triggered and clean training prompts, for
    recording activations and contrasting features on the same inputs the model is measured on."""
    out.mkdir(parents=True, exist_ok=True)
    where = data.random_positions(len(prompts.train), seed)
    sets = {
        "triggered": [data.insert_trigger(p, trigger, w) for p, w in zip(prompts.train, where, strict=True)],
        "clean": list(prompts.train),
    }
    paths = {}
    for name, ps in sets.items():
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": p, "text": fmt(p)}) + "\n" for p in ps))
        paths[name] = str(path)
    return paths


def backdoor_study(
    spec: str,
    trigger: str,
    response: str,
    prompts: BackdoorPrompts | None = None,
    cfg: BackdoorConfig | None = None,
    edits: dict[str, Any] | None = None,
    primary: str | None = None,
    model: HookedModel | None = None,
    progress: Callable[[str], None] | None = None,
    edit_info: dict[str, dict[str, Any]] | None = None,
    edit_baselines: dict[str, tuple[Any, dict[str, Any]]] | None = None,
) -> BackdoorResult:
    """Measure the backdoor of the model at ``spec`` before any edit, the baselines, and any ``edits``.

    ``edit_info`` adds a description to a named edit's entry (the primary's ``feature`` fills the result's
    ``feature``); ``edit_baselines`` are more baselines given as edits with their description (the
    random-feature ablation), measured like the built-in ones."""
    cfg = cfg or BackdoorConfig()
    prompts = (prompts or BackdoorPrompts.shipped()).limited(cfg.limit)
    if not prompts.heldout:
        raise EmptyPromptSetError("The backdoor study needs held-out prompts; got none.")
    if primary is not None and primary not in (edits or {}):
        raise InvalidConfigError(f"primary edit {primary!r} is not among the edits {sorted(edits or {})}")
    say = progress or (lambda _: None)
    seconds: dict[str, float] = {}
    model = model or _load(spec)
    data.check_trigger(trigger, model.tokenizer)
    fmt = formatter(model)
    ecfg = cfg.eval
    t0 = time.perf_counter()
    say("reference answers on clean held-out prompts")
    ref = Reference.build(model, prompts.heldout, ecfg)
    say("backdoor before any edit")
    before = measure_backdoor(model, ref, trigger, response, prompts.heldout, None, ecfg)
    seconds["before"] = round(time.perf_counter() - t0, 1)
    if before.asr.value < cfg.min_asr_before:
        raise BehaviourAbsentError(
            f"The backdoor does not fire: attack success before any edit is {before.asr} on held-out prompts "
            f"with {trigger!r} (responses are checked for {response!r}), below {cfg.min_asr_before:.0%}. "
            "There is nothing to remove; check the model, trigger and response."
        )
    manifest = read_manifest(spec) if Path(spec).is_dir() else {}
    organism_vs_base = None
    if cfg.compare_base and manifest.get("base_model"):
        say(f"organism vs its base model {manifest['base_model']}")
        t0 = time.perf_counter()
        base = _load(manifest["base_model"])
        base_ref = Reference.build(base, prompts.heldout, ecfg)
        c = compare(
            base,
            model,
            base_ref.texts,
            base_ref.continuations,
            n_tokens=ecfg.clean_tokens,
            batch_size=ecfg.batch_size,
        )
        from neuroscope.organisms.metrics import mean

        organism_vs_base = {
            "base_model": manifest["base_model"],
            "clean_agreement": mean(c.agreement, seed=ecfg.seed).to_dict(),
            "clean_kl": mean(c.kl, seed=ecfg.seed).to_dict(),
        }
        del base
        seconds["organism_vs_base"] = round(time.perf_counter() - t0, 1)

    baselines: dict[str, dict[str, Any]] = {}
    directions = None
    if {"steer_subtract", "direction_ablate"} & set(cfg.baselines):
        say("trigger direction: difference of means, triggered vs clean training prompts")
        where = data.random_positions(len(prompts.train), ecfg.seed)
        trig = [fmt(data.insert_trigger(p, trigger, w)) for p, w in zip(prompts.train, where, strict=True)]
        directions = diff_of_means(model, trig, [fmt(p) for p in prompts.train], batch_size=ecfg.batch_size)
        vwhere = data.random_positions(len(prompts.validation), ecfg.seed + 1)
        vtrig = [
            fmt(data.insert_trigger(p, trigger, w)) for p, w in zip(prompts.validation, vwhere, strict=True)
        ]
        vclean = [fmt(p) for p in prompts.validation]
        prefix = model.tokenizer.encode(response, add_special_tokens=False)[:4]
    for name in cfg.baselines:
        t0 = time.perf_counter()
        say(f"baseline {name}")
        info: dict[str, Any] = {}
        target, edit = model, None
        if name == "clean_finetune":
            tcfg = cfg.finetune or (
                TrainConfig(**manifest["train"]) if "train" in manifest else TrainConfig()
            )
            target, info = _clean_finetune(spec, model, prompts.train, tcfg)
        else:
            assert directions is not None
            remove = (lambda m, l, v: add_direction(l, v, -1.0)) if name == "steer_subtract" else None
            choice = choose_layer(
                model,
                directions,
                vtrig,
                vclean,
                prefix,
                cfg.max_layer_frac,
                cfg.max_kl,
                score_add=False,
                batch_size=ecfg.batch_size,
                remove=remove,
            )
            v = directions[choice.best].to(model.dtype)
            edit = (
                add_direction(choice.best, v, -1.0)
                if name == "steer_subtract"
                else directional_ablation(model, v)
            )
            info = {
                "layer": choice.best,
                "layer_choice": choice.to_dict(),
                "vector_norm": float(v.float().norm()),
            }
        # near misses are measured before and for the edits; a baseline is judged on the table's columns
        bcfg = replace(ecfg, near_miss=False)
        m = measure_backdoor(target, ref, trigger, response, prompts.heldout, edit, bcfg)
        baselines[name] = {**_summary(m), **info}
        seconds[name] = round(time.perf_counter() - t0, 1)
    for name, (edit, info) in (edit_baselines or {}).items():
        t0 = time.perf_counter()
        say(f"baseline {name}")
        m = measure_backdoor(
            model, ref, trigger, response, prompts.heldout, edit, replace(ecfg, near_miss=False)
        )
        baselines[name] = {**_summary(m), **info}
        seconds[name] = round(time.perf_counter() - t0, 1)
    measured_edits: dict[str, dict[str, Any]] = {}
    for name, edit in (edits or {}).items():
        t0 = time.perf_counter()
        say(f"edit {name}")
        m = measure_backdoor(model, ref, trigger, response, prompts.heldout, edit, ecfg)
        measured_edits[name] = {**_summary(m), **(edit_info or {}).get(name, {})}
        seconds[name] = round(time.perf_counter() - t0, 1)
    return BackdoorResult(
        model=model.cfg.name,
        trigger=trigger,
        response=response,
        before=before,
        baselines=baselines,
        edits=measured_edits,
        primary=primary,
        organism_vs_base=organism_vs_base,
        config=json.loads(json.dumps(asdict(cfg), default=str)),
        n_prompts={
            "train": len(prompts.train),
            "validation": len(prompts.validation),
            "heldout": len(prompts.heldout),
        },
        seconds=seconds,
        organism=manifest or None,
        chat_template=bool(getattr(model.tokenizer, "chat_template", None)),
    )
