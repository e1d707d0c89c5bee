"""The induction-head report: formation over checkpoints, final attention, ablation, composition; JSON + Markdown."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

from neuroscope.analysis.attention import THRESHOLDS
from neuroscope.train import figures
from neuroscope.train.composition import composition_evidence
from neuroscope.train.config import TrainConfig
from neuroscope.train.data import repeated_tokens
from neuroscope.train.formation import FormationResult, analyse_checkpoints
from neuroscope.train.loop import CONFIG_FILE
from neuroscope.train.metrics import ablated_in_context_loss, attention_patterns, head_scores, in_context_loss

RESULTS = "results.json"
INDUCTION = THRESHOLDS["induction"]
# what the trained model must reach (acceptance targets); which heads count as induction heads is decided by
# the analysis library's one labelling threshold, neuroscope.analysis.attention.THRESHOLDS["induction"]
TARGETS = {
    "induction": 0.7,
    "prev_token": 0.7,
    "repeated_over_first": 1 / 3,
    "ablation_within": 0.25,
    "last_over_first": 3.0,
    "minutes": 15.0,
}


def _acceptance(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    t = TARGETS
    ind, prev = res["final"]["induction_head"], res["final"]["prev_token_head"]
    loss, abl = res["final"]["in_context_loss"], res["ablation"]["induction_head"]
    every = res["ablation"]["all_induction_heads"]
    rise = res["formation"]["rise"]
    minutes = (res["training"].get("seconds") or float("nan")) / 60
    comp = res["composition"]
    k_path = next(p for p in comp["path_ablation"] if p["site"] == "k")
    q_path = next(p for p in comp["path_ablation"] if p["site"] == "q")
    return {
        "training_minutes": {
            "value": minutes,
            "target": f"<= {t['minutes']}",
            "pass": minutes <= t["minutes"],
        },
        "layer1_induction_score": {
            "value": ind["score"],
            "target": f">= {t['induction']}",
            "pass": ind["score"] >= t["induction"],
        },
        "layer0_prev_token_score": {
            "value": prev["score"],
            "target": f">= {t['prev_token']}",
            "pass": prev["score"] >= t["prev_token"],
        },
        "repeated_over_first_loss": {
            "value": loss["ratio"],
            "target": f"< {t['repeated_over_first']:.3f}",
            "pass": loss["ratio"] < t["repeated_over_first"],
        },
        "ablate_top_induction_head": {
            "value": abl["repeated_half"] / abl["first_half"],
            "target": f"repeated / first >= {1 - t['ablation_within']} (within {t['ablation_within']:.0%} of the first half)",
            "pass": abs(abl["repeated_half"] - abl["first_half"]) <= t["ablation_within"] * abl["first_half"],
        },
        "ablate_all_induction_heads": {
            "value": every["repeated_half"] / every["first_half"],
            "target": f"repeated / first >= {1 - t['ablation_within']} (heads {every['heads']})",
            "pass": abs(every["repeated_half"] - every["first_half"])
            <= t["ablation_within"] * every["first_half"],
        },
        "score_last_over_first": {
            "value": rise["score_last_over_first"],
            "target": f">= {t['last_over_first']}",
            "pass": rise["score_last_over_first"] >= t["last_over_first"],
        },
        "k_composition_beats_q_and_chance": {
            "value": comp["pair"]["k"],
            "target": f"> Q-comp ({comp['pair']['q']:.3f}) and > chance ({comp['random_baseline']:.3f})",
            "pass": comp["pair"]["k"] > comp["pair"]["q"] and comp["pair"]["k"] > comp["random_baseline"],
        },
        "key_path_ablation_breaks_induction": {
            "value": k_path["induction_score"],
            "target": f"< half the unpatched score ({comp['unpatched']['induction_score']:.3f}), query path ({q_path['induction_score']:.3f}) kept higher",
            "pass": k_path["induction_score"] < 0.5 * comp["unpatched"]["induction_score"]
            and q_path["induction_score"] > k_path["induction_score"],
        },
    }


def build_report(
    run: str | Path, n_sequences: int = 64, progress: bool = False
) -> tuple[dict[str, Any], FormationResult, dict]:
    """Measure a trained run folder; returns (results dict, formation result, example patterns for figures)."""
    import neuroscope

    run = Path(run)
    cfg = TrainConfig.load(run / CONFIG_FILE)
    t0 = time.perf_counter()
    formation = analyse_checkpoints(run, n_sequences=n_sequences, progress=progress)
    model = neuroscope.load_model(str(run), device="cpu")
    seq_len = formation.seq_len
    tokens = repeated_tokens(n_sequences, seq_len, cfg.vocab, model.tokenizer.bos_token_id)
    ind, prev = head_scores(model, tokens)
    ih, ph = formation.induction_head, formation.prev_token_head
    loss = in_context_loss(model, tokens, seq_len)
    per_head = {
        f"L{ih[0]}H{h}": ablated_in_context_loss(model, tokens, seq_len, [(ih[0], h)]).to_dict()
        for h in range(model.cfg.n_heads)
    }
    strong = [(ih[0], h) for h in range(model.cfg.n_heads) if ind[ih[0], h] >= INDUCTION] or [ih]
    ablation = {
        "induction_head": ablated_in_context_loss(model, tokens, seq_len, [ih]).to_dict(),
        "prev_token_head": ablated_in_context_loss(model, tokens, seq_len, [ph]).to_dict(),
        "all_induction_heads": {
            "heads": [list(h) for h in strong],
            **ablated_in_context_loss(model, tokens, seq_len, strong).to_dict(),
        },
        "each_layer_head": per_head,
    }
    composition = composition_evidence(model, tokens, seq_len, ph, ih)
    train_result = (
        json.loads((run / "train_result.json").read_text()) if (run / "train_result.json").is_file() else {}
    )
    # a short example so the heatmaps are legible
    short = 12
    example = repeated_tokens(1, short, cfg.vocab, model.tokenizer.bos_token_id, seed=7)
    pats = attention_patterns(model, example)[:, 0]
    patterns = {
        f"prev-token head L{ph[0]}H{ph[1]}": pats[ph[0], ph[1]].tolist(),
        f"induction head L{ih[0]}H{ih[1]}": pats[ih[0], ih[1]].tolist(),
    }
    labels = [f"{i}:{'BOS' if i == 0 else t}" for i, t in enumerate(example[0].tolist())]
    res: dict[str, Any] = {
        "run": str(run),
        "config": cfg.to_dict(),
        "training": {
            k: train_result.get(k)
            for k in (
                "seconds",
                "cpu_seconds",
                "load_average",
                "steps_per_second",
                "first_loss",
                "final_loss",
            )
        },
        "eval": {
            "n_sequences": n_sequences,
            "seq_len": seq_len,
            "seed": 1234,
            "score_definition": "neuroscope.analysis.attention.score_heads: induction: attention mass on the token "
            "after an earlier occurrence of the query's token, averaged over the queries that have one (the "
            "repeated half, and any token repeated inside X); prev-token: mean attention from i to i - 1",
        },
        "final": {
            "induction": ind.tolist(),
            "prev_token": prev.tolist(),
            "induction_head": {"layer": ih[0], "head": ih[1], "score": float(ind[ih])},
            "prev_token_head": {"layer": ph[0], "head": ph[1], "score": float(prev[ph])},
            "in_context_loss": loss.to_dict(),
        },
        "ablation": ablation,
        "composition": composition,
        "formation": formation.to_dict(),
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        "report_seconds": None,
    }
    res["acceptance"] = _acceptance(res)
    res["report_seconds"] = time.perf_counter() - t0
    return res, formation, {"patterns": patterns, "labels": labels}


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _pattern_sentence(ph: dict[str, Any], ih: dict[str, Any]) -> str:
    prev = f"L{ph['layer']}H{ph['head']} (previous-token score {_fmt(ph['score'])})"
    ind = f"L{ih['layer']}H{ih['head']} (induction score {_fmt(ih['score'])})"
    prev_says = (
        "attends to the previous position"
        if ph["score"] >= THRESHOLDS["previous_token"]
        else "does not attend mainly to the previous position"
    )
    ind_says = (
        "attends, in the second copy, to the token after the earlier occurrence of the current token: the "
        "off-diagonal stripe"
        if ih["score"] >= INDUCTION
        else "shows no clear induction stripe"
    )
    return f"On BOS + X + X with len(X) = 12: {prev} {prev_says}; {ind} {ind_says}."


def _data_line(cfg: dict[str, Any]) -> str:
    skip = cfg.get("skip_fraction") or 0.0
    text = cfg.get("text")
    parts = [
        f"- Data ({cfg['batch_size']} rows a step): BOS + X X X … cut at {cfg['n_ctx']} tokens, X uniform random tokens "
        f"(ids 0–{cfg['vocab'] - 1}) with len(X) drawn per row from [{cfg['min_repeat']}, {cfg['max_repeat']}], so "
        "no fixed offset finds the earlier copy (`neuroscope.train.data.training_batch`)."
    ]
    if skip:
        parts.append(
            f" {skip:.0%} of the rows are a previous-token task instead: BOS then triples `a, r, π(a)` of random "
            "tokens for one fixed random permutation π, so the token after `r` depends on the token one back and on "
            "nothing further back. It gives layer 0 a reason of its own to grow a previous-token head "
            "(`neuroscope.train.data.skip_bigram_rows`)."
        )
    if text and cfg.get("text_fraction"):
        parts.append(f" {cfg['text_fraction']:.0%} of the rows are windows of English text from `{text}`.")
    if cfg.get("head_lasso"):
        parts.append(
            f" After step {cfg.get('head_lasso_start', 0)} a group lasso, {cfg['head_lasso']} × the sum over "
            "layer-1 heads of the norm of each head's (W_Q, W_K, W_V, W_O), is added to the loss: copies of one "
            "circuit cost more than a single head, so the redundant induction heads are pruned "
            "(`neuroscope.train.loop.head_norms`)."
        )
    warm = f"{cfg['warmup']} warm-up steps, then constant" if cfg.get("warmup") else "constant"
    parts.append(
        f" {cfg['steps']} steps, AdamW lr {cfg['lr']} ({warm}), weight decay {cfg['weight_decay']}, seed {cfg['seed']}, "
        f"{cfg.get('threads') or 'default'} torch thread(s)."
    )
    return "".join(parts)


def _training_line(tr: dict[str, Any], cfg: dict[str, Any]) -> str:
    if not tr.get("seconds"):
        return f"- Training time not recorded (no train_result.json). Checkpoints every {cfg['checkpoint_every']} steps."
    load = tr.get("load_average")
    busy = f"; the machine's 1-minute load average during training was {load:.1f} on 2 cores" if load else ""
    return (
        f"- Training took {tr['seconds'] / 60:.1f} minutes wall-clock ({tr['steps_per_second']:.1f} steps/s) and "
        f"{(tr.get('cpu_seconds') or 0) / 60:.1f} CPU-minutes{busy}; training loss {tr['first_loss']:.3f} → "
        f"{tr['final_loss']:.3f}. Checkpoints every {cfg['checkpoint_every']} steps."
    )


def _ablation_sentence(res: dict[str, Any]) -> str:
    fin, abl = res["final"], res["ablation"]
    ih = fin["induction_head"]
    one, every = abl["induction_head"], abl["all_induction_heads"]
    base = fin["in_context_loss"]["ratio"]
    heads = ", ".join(f"L{layer}H{h}" for layer, h in every["heads"])
    text = (
        f"Zero-ablating the top induction head L{ih['layer']}H{ih['head']} alone moves repeated / first from "
        f"{_fmt(base)} to {_fmt(one['ratio'])}"
    )
    layer = ih["layer"]
    strong = {tuple(h) for h in every["heads"]}
    pruned = [f"L{layer}H{h}" for h in range(len(fin["induction"][layer])) if (layer, h) not in strong]
    if res["config"].get("head_lasso") and pruned:
        text += (
            f". The head lasso pruned the other layer-{layer} heads ({', '.join(pruned)}: their induction "
            "scores sit at uniform attention and ablating them changes nothing), so one head carries the circuit"
        )
    if len(every["heads"]) > 1:
        text += (
            f"; zero-ablating all {len(every['heads'])} layer-{ih['layer']} heads with induction score ≥ {INDUCTION} "
            f"({heads}) moves it to {_fmt(every['ratio'])}"
        )
        if one["ratio"] < 0.75 <= every["ratio"]:
            text += (
                ". The induction heads are redundant copies of each other: any one of them is enough to copy, "
                "and in-context learning goes only when all of them go"
            )
    return text + "."


def render_markdown(res: dict[str, Any], command: str) -> str:
    cfg, fin, abl, comp = res["config"], res["final"], res["ablation"], res["composition"]
    ih, ph = fin["induction_head"], fin["prev_token_head"]
    rise = res["formation"]["rise"]
    tr = res["training"]
    lines = [
        "# Induction heads in a 2-layer attention-only GPT-2, trained from scratch",
        "",
        "Reproduces the central finding of Olsson et al., *In-context Learning and Induction Heads* (2022), on a "
        "model small enough to train on a 2-core CPU. Every number below was produced by:",
        "",
        "```bash",
        command,
        "```",
        "",
        "## Setup",
        f"- Model: Hugging Face `GPT2LMHeadModel`, {cfg['n_layers']} layers, {cfg['n_heads']} heads, d_model {cfg['d_model']}, "
        f"n_ctx {cfg['n_ctx']}, {'attention-only (MLP weights zero and frozen)' if cfg['attn_only'] else 'with MLPs'}; "
        "byte-level tokenizer (vocabulary 259)"
        + ("; learned position table initialised with sinusoids." if cfg.get("sinusoidal_init") else "."),
        _data_line(cfg),
        _training_line(tr, cfg),
        f"- Evaluation: {res['eval']['n_sequences']} sequences BOS + X + X, len(X) = {res['eval']['seq_len']}. "
        f"Scores: {res['eval']['score_definition']}. Attention patterns come from the hooked model's "
        "`blocks.{l}.attn.hook_pattern`; ablations use `neuroscope.interventions.Ablate` (zero, at `attn.hook_z`).",
        "",
        "## Acceptance",
        "",
        "| check | measured | target | pass |",
        "|---|---|---|---|",
    ]
    for name, a in res["acceptance"].items():
        lines.append(f"| {name} | {_fmt(a['value'])} | {a['target']} | {'yes' if a['pass'] else '**no**'} |")
    s_span, r_span = rise["score_span_10_90"], rise["ratio_span_10_90"]
    lines += [
        "",
        "## When the induction head forms",
        "",
        "![formation](formation.png)  (interactive: [formation.html](formation.html))",
        "",
        f"The induction score of L{ih['layer']}H{ih['head']} goes from {_fmt(rise['score_first'])} at step 0 to "
        f"{_fmt(rise['score_last'])} ({rise['score_last_over_first']:.1f}×). It covers 10 % → 90 % of that rise between steps "
        f"{s_span['start']} and {s_span['end']}; the in-context loss ratio (repeated / first half) makes 10 % → 90 % of its "
        f"drop between steps {r_span['start']} and {r_span['end']}. The largest single jump in the score is "
        f"{_fmt(rise['largest_jump']['delta'])}, between steps {rise['largest_jump']['from_step']} and "
        f"{rise['largest_jump']['to_step']}.",
        "",
        "## What the heads attend to",
        "",
        "![patterns](patterns.png)  (interactive: [patterns.html](patterns.html))",
        "",
        _pattern_sentence(ph, ih),
        "",
        "Final scores per head (rows: layers, columns: heads):",
        "",
        "| layer | induction | previous-token |",
        "|---|---|---|",
    ]
    for layer, (i_row, p_row) in enumerate(zip(fin["induction"], fin["prev_token"], strict=True)):
        lines.append(f"| {layer} | {' '.join(_fmt(v) for v in i_row)} | {' '.join(_fmt(v) for v in p_row)} |")
    loss = fin["in_context_loss"]
    lines += [
        "",
        "## Ablation",
        "",
        "| ablated (zero) | first-half loss | repeated-half loss | repeated / first |",
        "|---|---|---|---|",
        f"| nothing | {_fmt(loss['first_half'])} | {_fmt(loss['repeated_half'])} | {_fmt(loss['ratio'])} |",
        f"| (reference: a uniform guess over {cfg['vocab']} tokens) | {_fmt(math.log(cfg['vocab']))} | "
        f"{_fmt(math.log(cfg['vocab']))} | 1.000 |",
        f"| induction head L{ih['layer']}H{ih['head']} | {_fmt(abl['induction_head']['first_half'])} | "
        f"{_fmt(abl['induction_head']['repeated_half'])} | {_fmt(abl['induction_head']['ratio'])} |",
        f"| prev-token head L{ph['layer']}H{ph['head']} | {_fmt(abl['prev_token_head']['first_half'])} | "
        f"{_fmt(abl['prev_token_head']['repeated_half'])} | {_fmt(abl['prev_token_head']['ratio'])} |",
        f"| all layer-{ih['layer']} heads with induction score ≥ {INDUCTION} {abl['all_induction_heads']['heads']} | "
        f"{_fmt(abl['all_induction_heads']['first_half'])} | {_fmt(abl['all_induction_heads']['repeated_half'])} | "
        f"{_fmt(abl['all_induction_heads']['ratio'])} |",
    ]
    for name, v in abl["each_layer_head"].items():
        lines.append(
            f"| {name} | {_fmt(v['first_half'])} | {_fmt(v['repeated_half'])} | {_fmt(v['ratio'])} |"
        )
    lines += ["", _ablation_sentence(res)]
    pair, un = comp["pair"], comp["unpatched"]
    lines += [
        "",
        "## The previous-token head feeds the induction head's keys",
        "",
        f"Composition scores of L{ph['layer']}H{ph['head']}'s OV circuit into L{ih['layer']}H{ih['head']}'s QK circuit "
        f"(LayerNorm gains folded in): K-composition {_fmt(pair['k'])}, Q-composition {_fmt(pair['q'])}, V-composition "
        f"{_fmt(pair['v'])}; random low-rank matrices of the same shapes score {_fmt(comp['random_baseline'])} on average.",
        "",
        "K-composition, every layer-0 head (rows) into every layer-1 head (columns):",
        "",
        "| | " + " | ".join(f"L1H{j}" for j in range(len(comp["composition"]["k"][0]))) + " |",
        "|---" * (len(comp["composition"]["k"][0]) + 1) + "|",
    ]
    for i, row in enumerate(comp["composition"]["k"]):
        lines.append(f"| L0H{i} | " + " | ".join(_fmt(v) for v in row) + " |")
    lines += [
        "",
        f"Path ablation (causal check): remove L{ph['layer']}H{ph['head']}'s output from the residual stream that "
        f"L{ih['layer']}H{ih['head']} reads its queries, keys or values from (recomputing only that input through "
        "`ln_1` and the head's own weights, patched in at `attn.hook_q|k|v`), all other paths intact:",
        "",
        "| path removed | induction score | repeated-half loss | repeated / first |",
        "|---|---|---|---|",
        f"| none | {_fmt(un['induction_score'])} | {_fmt(un['repeated_half'])} | {_fmt(un['ratio'])} |",
    ]
    for p in comp["path_ablation"]:
        lines.append(
            f"| prev-token head → {p['site']} | {_fmt(p['induction_score'])} | {_fmt(p['repeated_half'])} | "
            f"{_fmt(p['ratio'])} |"
        )
    lines += ["", f"Raw numbers: [{RESULTS}]({RESULTS}). Report built in {res['report_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def write_report(
    run: str | Path,
    out: str | Path,
    command: str,
    n_sequences: int = 64,
    progress: bool = False,
    plotly_js: bool | str = "cdn",
) -> dict[str, Any]:
    """Write results.json, README.md, formation.{html,png} and patterns.{html,png} into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res, formation, ex = build_report(run, n_sequences=n_sequences, progress=progress)
    res["command"] = command
    figures.formation_figure(formation).write_html(out / "formation.html", include_plotlyjs=plotly_js)
    figures.pattern_figure(ex["patterns"], ex["labels"]).write_html(
        out / "patterns.html", include_plotlyjs=plotly_js
    )
    res["png"] = figures.write_formation_png(formation, out / "formation.png")
    figures.write_pattern_png(ex["patterns"], out / "patterns.png")
    (out / RESULTS).write_text(json.dumps(res, indent=1) + "\n")
    text = render_markdown(res, command)
    if (out / "RECIPE.md").is_file():
        text += "\nWhy the data looks like this (and why an earlier recipe formed no induction head): [RECIPE.md](RECIPE.md).\n"
    (out / "README.md").write_text(text)
    return res
