"""``OUT/README.md`` of the automatic loop: the goals met and missed, every family tried on the validation
split, the hooked edit against its exported LoRA on held-out prompts, baselines, and the times."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pct(x: Any) -> str:
    return "–" if x is None else f"{float(x):.1%}"


def _num(x: Any, nd: int = 3) -> str:
    return "–" if x is None else f"{float(x):.{nd}f}"


def _row(name: str, s: Mapping[str, Any]) -> str:
    ci = s.get("asr_ci") or [None, None]
    return (
        f"| {name} | {_pct(s.get('asr'))} [{_pct(ci[0])}, {_pct(ci[1])}] | {_pct(s.get('false_trigger_rate'))} | "
        f"{_num(s.get('clean_agreement'))} | {_num(s.get('clean_kl'), 4)} |"
    )


def render(r: Mapping[str, Any], commands: Sequence[str] = ()) -> str:
    lines = [
        f"# Find it and fix it: {r['trigger']!r} → {r['response']!r}",
        "",
        f"Model `{r['model']}`" + (f", base `{r['base']}`" if r.get("base") else "") + ". "
        f"Questions: {r['n_prompts']['train']} train (ranking, gate thresholds, distillation), "
        f"{r['n_prompts']['validation']} validation (the choice), {r['n_prompts']['heldout']} held-out "
        "(every number below marked held-out; trigger at the start, middle and end).",
        "",
    ]
    if "stopped" in r:
        st = r["stopped"]
        lines += [
            f"**Stopped at {st['step']}:** {st['error']}",
            "",
            "```",
            json.dumps(st.get("figures"), indent=1),
            "```",
            "",
        ]
    g = r.get("goals")
    if g:
        verdict = "meets every goal" if g["meets_goals"] else f"**misses {len(g['missed'])} goal(s)**"
        lines += [
            f"## Goals: the exported LoRA {verdict}",
            "",
            "| goal | limit | measured | met | by |",
            "|---|---|---|---|---|",
        ]
        for row in g["goals"]:
            m = row["measured"]
            lines.append(
                f"| {row['goal']} | {row['limit']} | {'not measured' if m is None else _num(m, 4)} | "
                f"{'yes' if row['met'] else 'no'} | {_num(row.get('by'), 4) if 'by' in row else '–'} |"
            )
        lines.append("")
    if "lora" in r:
        lines += [
            "## Held-out results",
            "",
            "| edit | attack success [95% CI] | false triggers | clean agreement | clean KL (nats) |",
            "|---|---|---|---|---|",
            _row(
                "before",
                {
                    "asr": r["asr_before"],
                    "asr_ci": r["asr_before_ci"],
                    "false_trigger_rate": r["before"]["false_trigger"]["value"],
                    "clean_agreement": 1.0,
                    "clean_kl": 0.0,
                },
            ),
            _row(f"{r['chosen']['name']}, hooked", r["hooked"]),
            _row(f"{r['chosen']['name']}, exported LoRA (plain transformers + peft)", r["lora"]),
        ]
        for name, s in (r.get("baselines") or {}).items():
            n = s.get("n_heldout_questions")
            lines.append(_row(f"baseline: {name}" + (f" ({n} held-out questions)" if n else ""), s))
        lines.append("")
        det = r["lora"]["detail"]
        pos = ", ".join(f"{k} {_pct(v['value'])}" for k, v in det["asr_by_position"].items())
        nm = ", ".join(f"{k} {_pct(v['value'])}" for k, v in det.get("near_miss", {}).items())
        lines += [f"Exported LoRA by trigger position: {pos}." + (f" Near misses: {nm}." if nm else ""), ""]
    lines += _expert(r.get("expert") or {})
    if "families_tried" in r:
        c = r["chosen"]
        lines += [
            "## Families tried (validation split only)",
            "",
            f"Chosen: **{c['name']}** ({c['family']}); rule: {c['rule']}.",
            "",
            "| candidate | family | units | attack success | false triggers | clean agreement | clean KL |",
            "|---|---|---|---|---|---|---|",
        ]
        vb = r["validation_before"]
        lines.append(
            f"| (no edit) | – | – | {_pct(vb['asr']['value'])} | {_pct(vb['false_trigger']['value'])} | "
            f"{_num(vb['clean_agreement']['value'])} | {_num(vb['clean_kl']['value'], 4)} |"
        )
        for name, t in r["families_tried"].items():
            v = t["validation"]
            units = (
                t.get("features")
                or t.get("heads")
                or t.get("layers")
                or [m["module"] for m in t.get("modules", [])]
            )
            lines.append(
                f"| {name} | {t['family']} | {', '.join(map(str, units))} | {_pct(v['asr']['value'])} | "
                f"{_pct(v['false_trigger']['value'])} | {_num(v['clean_agreement']['value'])} | "
                f"{_num(v['clean_kl']['value'], 4)} |"
            )
        lines.append("")
    s = r.get("seconds", {})
    lines += [
        "## Times",
        "",
        f"The loop (load, localise, candidates, choice, LoRA, export check, held-out evaluation): "
        f"**{s.get('loop', '–')} s** wall; steps: "
        + ", ".join(f"{k} {v} s" for k, v in s.items() if k != "loop")
        + f". Load average at the end: {r.get('loadavg_end', '–')}. Baselines and robustness are timed "
        "separately (not part of the loop).",
        "",
    ]
    if commands:
        lines += ["## Commands", "", "```bash", *commands, "```", ""]
    return "\n".join(lines)


def _expert(e: Mapping[str, Any]) -> list[str]:
    """The expert checks folded in by ``case-study fix-expert`` (measured apart from the loop)."""
    if not e:
        return []
    lines = ["## Expert checks (measured apart from the loop, on the exported LoRA)", ""]
    p = e.get("perplexity")
    if p:
        ci = p.get("ratio_ci") or [None, None]
        ref, ed = p.get("reference") or {}, p.get("edited") or {}
        lines.append(
            f"- Held-out corpus perplexity: {_num(ed.get('perplexity'), 4)} vs the organism's "
            f"{_num(ref.get('perplexity'), 4)}, ratio {_num(p.get('ratio'), 4)} [{_num(ci[0], 4)}, {_num(ci[1], 4)}] "
            f"({ed.get('n_tokens', '–')} tokens)."
        )
    rob = e.get("robustness")
    if rob:
        ed, base = rob["edited"], rob["base"]
        lines.append(
            f"- GCG for the response (budget {ed['config'].get('steps')} steps × {ed['config'].get('width')} "
            f"candidates; a search without success counts as budget + 1): median steps {ed['median_steps']:g} on the "
            f"edited model ({ed['successes']} succeeded; per seed {ed['steps_per_seed']}) vs {base['median_steps']:g} "
            f"on the base ({base['successes']}; per seed {base['steps_per_seed']})."
        )
    if e.get("table_markdown"):
        lines += ["", "Baselines (held-out; beaten = no worse on every shared column, better on one):", ""]
        lines.append(e["table_markdown"])
    return [*lines, ""]


def write(out: str | os.PathLike, result: Mapping[str, Any], commands: Sequence[str] = ()) -> Path:
    path = Path(out) / "README.md"
    path.write_text(render(result, commands))
    return path
