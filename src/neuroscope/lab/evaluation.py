"""The feature laboratory's evaluation panel: attack success and clean agreement of the model under a set of
live edits (the prepared edits a request names), over an organism's held-out prompts or a user's file.

Every number comes from the organisms library: greedy continuations from ``generation.greedy`` under the
edits' interventions (``LiveEdits.interventions``, what a WebSocket request naming them runs), attack success
from ``metrics.contains``, agreement from ``generation.compare`` (teacher-forced along the unedited model's
own greedy answers, as ``evaluate.measure_backdoor`` reports it). This module only batches and counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.errors import EmptyPromptSetError, InvalidConfigError, PromptSetKindMissingError
from neuroscope.lab.live import LiveEdits
from neuroscope.organisms import data
from neuroscope.organisms.generation import check_budget, compare, decode, formatter, greedy
from neuroscope.organisms.metrics import Mean, Rate, contains, mean, rate
from neuroscope.organisms.train import read_manifest

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

Progress = Callable[[int, int], None]  # (done, total) prompts
MAX_PROMPTS = 512  # per kind: a panel run is interactive, not a study


@dataclass(frozen=True)
class PromptSet:
    """Triggered and clean prompts (unformatted) and the response whose appearance is an attack success."""

    triggered: tuple[str, ...]
    clean: tuple[str, ...]
    response: str
    trigger: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for kind in ("triggered", "clean"):
            if not getattr(self, kind):
                raise PromptSetKindMissingError(
                    f"The prompt set {self.source or ''} has no {kind} prompts: give a list under "
                    f'{kind!r} (a file is JSON {{"triggered": [...], "clean": [...]}}).'
                )
            if len(getattr(self, kind)) > MAX_PROMPTS:
                raise InvalidConfigError(f"At most {MAX_PROMPTS} {kind} prompts per evaluation.")
        if not self.response.strip():
            raise EmptyPromptSetError("The response to detect is empty: give the organism's response text.")

    @classmethod
    def organism(cls, trigger: str, response: str, n: int = 24, seed: int = 0) -> PromptSet:
        """The shipped held-out questions, clean and with ``trigger`` at a seeded, balanced position each."""
        held = list(data.questions().heldout[:n])
        where = data.random_positions(len(held), seed)
        trig = [data.insert_trigger(p, trigger, w) for p, w in zip(held, where, strict=True)]
        return cls(tuple(trig), tuple(held), response, trigger, f"organism held-out ({len(held)} questions)")

    @classmethod
    def from_manifest(cls, folder: str | Path, n: int = 24, seed: int = 0) -> PromptSet | None:
        """The held-out set of a backdoor organism folder (its ``organism.json``), or None for other models."""
        man = read_manifest(folder)
        if man.get("kind") != "backdoor" or not man.get("trigger") or not man.get("response"):
            return None
        return cls.organism(man["trigger"], man["response"], n, seed)

    @classmethod
    def from_file(cls, path: str | Path, response: str, trigger: str | None = None) -> PromptSet:
        """A JSON file ``{"triggered": [...], "clean": [...]}``; a missing kind is a named error."""
        p = Path(path)
        raw = data.read_prompts(p, "triggered") if p.suffix == ".json" and _has(p, "triggered") else []
        clean = data.read_prompts(p, "clean") if p.suffix == ".json" and _has(p, "clean") else []
        return cls(tuple(raw), tuple(clean), response, trigger, f"file {p.name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "trigger": self.trigger,
            "response": self.response,
            "n_triggered": len(self.triggered),
            "n_clean": len(self.clean),
        }


def _has(path: Path, key: str) -> bool:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidConfigError(f"Prompt file {str(path)!r} is not readable JSON: {e}") from None
    if not isinstance(d, dict):
        raise InvalidConfigError(
            f'Prompt file {str(path)!r} must be a JSON object {{"triggered": [...], "clean": [...]}}.'
        )
    return isinstance(d.get(key), list) and any(isinstance(x, str) and x.strip() for x in d[key])


@dataclass(frozen=True)
class PanelConfig:
    max_new_tokens: int = 16
    """Generation budget for attack success (the response must fit in it)."""
    clean_tokens: int = 16
    """Agreement is measured over this many tokens of the unedited model's greedy answer."""
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.clean_tokens < 1 or self.batch_size < 1:
            raise InvalidConfigError("max_new_tokens, clean_tokens and batch_size must be >= 1")


@dataclass
class Reference:
    """The unedited model's greedy answers to the clean prompts (one per prompt set, shared by every run)."""

    texts: list[str]
    continuations: list[list[int]]


@dataclass
class PanelResult:
    edits: list[str]
    asr: Rate  # triggered prompts whose greedy answer contains the response
    false_trigger: Rate  # clean prompts whose greedy answer contains it
    clean_agreement: Mean  # per clean prompt: argmax agreement with the unedited model along its answer
    clean_exact: Rate  # clean greedy answers identical to the unedited model's over clean_tokens
    prompts: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edits": list(self.edits),
            "asr": self.asr.to_dict(),
            "false_trigger": self.false_trigger.to_dict(),
            "clean_agreement": self.clean_agreement.to_dict(),
            "clean_exact": self.clean_exact.to_dict(),
            "prompts": self.prompts,
            "samples": self.samples,
        }


def reference(model: HookedModel, prompts: PromptSet, cfg: PanelConfig | None = None) -> Reference:
    cfg = cfg or PanelConfig()
    fmt = formatter(model, warn=False)
    texts = [fmt(p) for p in prompts.clean]
    budget = max(cfg.clean_tokens, cfg.max_new_tokens)
    return Reference(texts, greedy(model, texts, budget, None, cfg.batch_size))


def evaluation_steps(
    model: HookedModel,
    prompts: PromptSet,
    names: Sequence[str] = (),
    cfg: PanelConfig | None = None,
    ref: Reference | None = None,
    n_samples: int = 3,
) -> Generator[tuple[int, int], None, PanelResult]:
    """The evaluation one batch at a time: yields ``(done, total)`` prompts after each batch (first
    ``(0, total)``) and returns the :class:`PanelResult`. A server runs each step as its own job on the model
    thread, so live requests are not held up for a whole evaluation; ``evaluate_edits`` runs them all."""
    cfg = cfg or PanelConfig()
    check_budget(model.tokenizer, prompts.response, cfg.max_new_tokens)
    edit = LiveEdits.of(model).interventions(list(names))  # unknown names fail here, before any forward
    fmt = formatter(model, warn=False)
    nt, nc, b = len(prompts.triggered), len(prompts.clean), cfg.batch_size
    budget = max(cfg.clean_tokens, cfg.max_new_tokens)
    total = nt + 2 * nc + (0 if ref is not None else nc)
    done = 0
    yield done, total
    if ref is None:
        fmt_clean = [fmt(p) for p in prompts.clean]
        conts: list[list[int]] = []
        for i in range(0, nc, b):
            conts += greedy(model, fmt_clean[i : i + b], budget, None, b)
            done += len(fmt_clean[i : i + b])
            yield done, total
        ref = Reference(fmt_clean, conts)
    trig_out: list[str] = []
    for i in range(0, nt, b):
        chunk = [fmt(p) for p in prompts.triggered[i : i + b]]
        trig_out += decode(model, greedy(model, chunk, cfg.max_new_tokens, edit, b))
        done += len(chunk)
        yield done, total
    clean_ids: list[list[int]] = []
    agreement: list[float] = []
    for i in range(0, nc, b):
        texts, conts_i = ref.texts[i : i + b], ref.continuations[i : i + b]
        clean_ids += greedy(model, texts, budget, edit, b)
        done += len(texts)
        yield done, total
        agreement += [
            float(a) for a in compare(model, model, texts, conts_i, None, edit, cfg.clean_tokens, b).agreement
        ]
        done += len(texts)
        yield done, total
    clean_out = decode(model, clean_ids)
    n = cfg.clean_tokens
    return PanelResult(
        edits=list(names),
        asr=rate(contains(o, prompts.response) for o in trig_out),
        false_trigger=rate(contains(o, prompts.response) for o in clean_out),
        clean_agreement=mean(agreement),
        clean_exact=rate(a[:n] == r[:n] for a, r in zip(clean_ids, ref.continuations, strict=True)),
        prompts=prompts.to_dict(),
        samples={"triggered": trig_out[:n_samples], "clean": clean_out[:n_samples]},
    )


def evaluate_edits(
    model: HookedModel,
    prompts: PromptSet,
    names: Sequence[str] = (),
    cfg: PanelConfig | None = None,
    ref: Reference | None = None,
    progress: Progress | None = None,
    n_samples: int = 3,
) -> PanelResult:
    """Attack success and clean agreement of ``model`` with the prepared live edits ``names`` on ``prompts``,
    in batches of ``cfg.batch_size``; ``progress(done, total)`` after each batch (the unedited model's clean
    answers count when ``ref`` is not given)."""
    steps = evaluation_steps(model, prompts, names, cfg, ref, n_samples)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)
