"""The prompt file of ``neuroscope diff``: JSON ``{"triggered": [...], "clean": [...]}`` or JSONL lines
``{"kind": "triggered" | "clean", "text": "..."}`` (or ``{"triggered": "..."}`` / ``{"clean": "..."}``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from neuroscope.errors import PromptSetMissingError, ResourceNotFoundError, TaskFileError

KINDS = ("triggered", "clean")


@dataclass(frozen=True)
class PromptSets:
    triggered: tuple[str, ...]
    clean: tuple[str, ...]


def _from_rows(rows: list[dict], path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise TaskFileError(f"{path} line {i + 1}: expected a JSON object")
        if "kind" in r:
            if r["kind"] not in KINDS or not isinstance(r.get("text"), str):
                raise TaskFileError(f"{path} line {i + 1}: kind must be one of {KINDS} with a 'text' string")
            out[r["kind"]].append(r["text"])
            continue
        for k in KINDS:
            if isinstance(r.get(k), str):
                out[k].append(r[k])
    return out


def read_prompt_sets(path: str | os.PathLike) -> PromptSets:
    """Both kinds of prompts; a file without one of them raises :class:`PromptSetMissingError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise ResourceNotFoundError(f"Prompt file {p} does not exist.")
    raw = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".jsonl":
            sets = _from_rows([json.loads(line) for line in raw.splitlines() if line.strip()], p)
        else:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise TaskFileError(f"{p}: expected an object with 'triggered' and 'clean' lists")
            sets = {k: [str(x) for x in data.get(k) or [] if str(x).strip()] for k in KINDS}
    except json.JSONDecodeError as e:
        raise TaskFileError(f"{p} is not valid JSON: {e}") from e
    missing = [k for k in KINDS if not sets[k]]
    if missing:
        raise PromptSetMissingError(
            f"{p} has no {' and no '.join(missing)} prompts: give both 'triggered' and 'clean' prompts "
            '(JSON {"triggered": [...], "clean": [...]} or JSONL {"kind": ..., "text": ...}).'
        )
    return PromptSets(tuple(sets["triggered"]), tuple(sets["clean"]))
