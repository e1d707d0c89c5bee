"""The chosen edit and the baselines in one table, and whether the edit beats every baseline.

Rows are the summaries :func:`neuroscope.organisms.backdoor.backdoor_study` writes for its baselines
(``clean_finetune`` at the organism's own training budget, ``steer_subtract``, ``direction_ablate``,
``random_features``) and edits (today's single-feature ablate is ``sae_feature``), or any dict with the same
keys: ``asr``, ``false_trigger_rate``, ``clean_agreement``, ``clean_kl`` (and optionally
``perplexity_ratio`` and ``gcg_median_steps``, added by the caller from :mod:`~neuroscope.organisms.quality`
and :mod:`~neuroscope.organisms.robustness`).

"Beats" is Pareto dominance on the columns both rows have: no worse on every one, strictly better on at least
one. A baseline that removes the backdoor by wrecking clean text (the direction ablated: attack success 4%,
clean KL 10 nats) is beaten only by an edit at least as good on both; where the edit loses on a column, the
table says which and by how much.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neuroscope.errors import InvalidConfigError

# column -> True when higher is better
COLUMNS: dict[str, bool] = {
    "asr": False,
    "false_trigger_rate": False,
    "clean_agreement": True,
    "clean_kl": False,
    "perplexity_change": False,  # |perplexity ratio − 1|
    "gcg_median_steps": True,
}


def _value(row: Mapping[str, Any], col: str) -> float | None:
    if col == "perplexity_change":
        r = row.get("perplexity_ratio")
        return None if r is None else abs(float(r) - 1.0)
    v = row.get(col)
    return None if v is None else float(v)


@dataclass
class Verdict:
    baseline: str
    beaten: bool
    better_on: list[str] = field(default_factory=list)
    worse_on: dict[str, float] = field(default_factory=dict)  # column -> by how much the edit is worse

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "beaten": self.beaten,
            "better_on": self.better_on,
            "worse_on": self.worse_on,
        }


@dataclass
class BaselineTable:
    chosen: str
    rows: dict[str, dict[str, float | None]]  # name -> column -> value (chosen first)
    verdicts: list[Verdict]

    @property
    def beats_every_baseline(self) -> bool:
        return bool(self.verdicts) and all(v.beaten for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "columns": [c for c in COLUMNS if any(r.get(c) is not None for r in self.rows.values())],
            "rows": self.rows,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "beats_every_baseline": self.beats_every_baseline,
            "rule": "beaten = the chosen edit is no worse on every column both rows have and better on one",
        }

    def markdown(self) -> str:
        cols = self.to_dict()["columns"]
        head = "| | " + " | ".join(cols) + " | beaten by the chosen edit |"
        lines = [head, "|" + "---|" * (len(cols) + 2)]
        verdict = {v.baseline: v for v in self.verdicts}
        for name, r in self.rows.items():
            cells = ["" if r.get(c) is None else f"{r[c]:.4g}" for c in cols]
            v = verdict.get(name)
            note = (
                "(chosen)"
                if name == self.chosen
                else "yes"
                if v and v.beaten
                else "no: worse on "
                + ", ".join(f"{c} by {d:.3g}" for c, d in (v.worse_on if v else {}).items())
            )
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {note} |")
        return "\n".join(lines)


def _row(summary: Mapping[str, Any]) -> dict[str, float | None]:
    return {c: _value(summary, c) for c in COLUMNS}


def baseline_table(
    chosen: str, edit: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]
) -> BaselineTable:
    """The chosen edit's summary ``edit`` against each of ``baselines`` (name -> summary)."""
    if not baselines:
        raise InvalidConfigError("no baselines to compare the chosen edit with")
    rows = {chosen: _row(edit), **{n: _row(s) for n, s in baselines.items()}}
    mine = rows[chosen]
    verdicts = []
    for name in baselines:
        other = rows[name]
        better, worse = [], {}
        for col, higher in COLUMNS.items():
            a, b = mine[col], other[col]
            if a is None or b is None:
                continue
            gain = (a - b) if higher else (b - a)
            if gain > 0:
                better.append(col)
            elif gain < 0:
                worse[col] = -gain
        verdicts.append(Verdict(name, bool(better) and not worse, better, worse))
    return BaselineTable(chosen, rows, verdicts)
