"""The contrastive experiment: contrast two matched prompt sets per head, rank, ablate on held-out prompts.

(a) target vs baseline prompts (matched pairs); (b) Δ = mean(target) − mean(baseline) of a per-head statistic
on the *discovery* split; (c) rank heads by |Δ|; (d) zero-ablate the top-k heads on the *held-out* target
prompts and measure the behaviour (log-probability of the answer), with a bootstrap 95% interval, against
``n_random`` seeded sets of k other heads (one-sided permutation p-value); (e) JSON + Markdown report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.analysis import figures
from neuroscope.analysis._util import bootstrap_ci, first_token_id, head_mask_hooks, last_logits
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

STATISTICS = ("z_norm", "attn_to_answer")


@dataclass(frozen=True)
class ContrastiveConfig:
    statistic: str = "z_norm"
    """Per-head statistic at the last token: ``z_norm`` (norm of the head's output, z·W_O) or
    ``attn_to_answer`` (attention mass on earlier occurrences of the answer's first token)."""
    k: int = 3
    """How many top-|Δ| heads to ablate."""
    n_random: int = 100
    """Seeded random k-head sets for the baseline and the permutation p-value."""
    heldout_frac: float = 0.5
    """Fraction of the prompt pairs held out for the ablation test (the rest is discovery)."""
    seed: int = 0
    n_boot: int = 2000
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise InvalidConfigError(f"statistic must be one of {STATISTICS}, got {self.statistic!r}")
        if self.k < 1:
            raise InvalidConfigError(f"k must be >= 1, got {self.k}")
        if self.n_random < 1:
            raise InvalidConfigError(f"n_random must be >= 1, got {self.n_random}")
        if not 0 < self.heldout_frac < 1:
            raise InvalidConfigError(f"heldout_frac must be in (0, 1), got {self.heldout_frac}")


@dataclass
class ContrastiveResult:
    config: dict[str, Any]
    discovery_indices: list[int]
    heldout_indices: list[int]
    delta: list[list[float]]  # [layer][head]
    ranking: list[tuple[int, int, float]]  # (layer, head, Δ) by |Δ|, all heads
    top_heads: list[tuple[int, int]]
    clean_metric: float  # mean log-prob of the answer on held-out target prompts
    effect: float  # mean change of the metric from ablating the top-k heads
    effect_ci: tuple[float, float]
    random_effects: list[float]  # mean change for each random k-head set
    random_mean: float
    random_interval: tuple[float, float]  # 2.5–97.5 percentiles over the random sets
    p_value: float  # one-sided: P(random set hurts at least as much)
    per_prompt_effect: list[float]
    random_heads: list[list[tuple[int, int]]]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["top_heads"] = [list(h) for h in self.top_heads]
        d["ranking"] = [list(r) for r in self.ranking]
        d["random_heads"] = [[list(h) for h in s] for s in self.random_heads]
        return d

    def figure(self):
        return figures.heatmap(
            self.delta,
            title=f"Δ {self.config['statistic']} per head (target − baseline, discovery split)",
            xlabel="head",
            ylabel="layer",
        )

    def effect_figure(self):
        import plotly.graph_objects as go

        fig = go.Figure(
            go.Histogram(
                x=self.random_effects, name=f"{len(self.random_effects)} random {self.config['k']}-head sets"
            )
        )
        fig.add_vline(
            x=self.effect, line_color="red", annotation_text=f"top {self.config['k']}: {self.effect:.3f}"
        )
        fig.update_layout(
            title="held-out change in answer log-prob from ablation",
            xaxis_title="Δ log-prob",
            yaxis_title="sets",
        )
        return fig


def _split(n: int, frac: float, seed: int) -> tuple[list[int], list[int]]:
    perm = np.random.default_rng(seed).permutation(n)
    n_held = max(1, min(n - 1, int(round(n * frac))))
    return sorted(perm[n_held:].tolist()), sorted(perm[:n_held].tolist())


def head_statistic(
    model: HookedModel, prompts: Sequence[str], answers: Sequence[int], statistic: str, batch_size: int = 32
) -> torch.Tensor:
    """``[prompt, layer, head]`` statistic at each prompt's last token."""
    n = model.cfg.n_layers
    kind = "z" if statistic == "z_norm" else "pattern"
    names = [f"blocks.{l}.attn.hook_{kind}" for l in range(n)]
    out = []
    for i in range(0, len(prompts), batch_size):
        batch = list(prompts[i : i + batch_size])
        tokens = model.tokenize(batch)
        rows = torch.arange(len(batch))
        last = tokens.last_positions
        with torch.no_grad():
            _, cache = model.run_with_cache(batch, names=names)
            per_layer = []
            for l in range(n):
                if statistic == "z_norm":
                    z = cache["z", l][rows, last].float()  # [b, head, d_head]
                    per_layer.append(torch.einsum("bhd,hdm->bhm", z, model.W_O(l).float()).norm(dim=-1))
                else:
                    pat = cache["pattern", l][rows, :, last].float()  # [b, head, key]
                    ans = torch.tensor([answers[i + j] for j in range(len(batch))], device=tokens.ids.device)
                    match = (tokens.ids == ans[:, None]).float()
                    match[rows, last] = 0.0
                    per_layer.append((pat * match[:, None, :]).sum(-1))
        out.append(torch.stack(per_layer, 1).cpu())
    return torch.cat(out)


def answer_logprob(
    model: HookedModel,
    prompts: Sequence[str],
    answers: Sequence[int],
    keep: torch.Tensor,
    batch_size: int = 32,
) -> torch.Tensor:
    """``[config, prompt]`` log-prob of the answer with head masks ``keep[config, layer, head]`` (rows batched)."""
    n_cfg, n_p = keep.shape[0], len(prompts)
    rows_keep = keep.repeat_interleave(n_p, 0)
    rows_prompts = list(prompts) * n_cfg
    rows_ans = torch.tensor(list(answers) * n_cfg)
    out = []
    for i in range(0, len(rows_prompts), batch_size):
        batch = rows_prompts[i : i + batch_size]
        tokens = model.tokenize(batch)
        with torch.no_grad():
            logits = model.run_with_hooks(
                batch, fwd_hooks=head_mask_hooks(model, rows_keep[i : i + batch_size])
            )
        lp = torch.log_softmax(last_logits(logits, tokens).float(), -1)
        out.append(lp[torch.arange(len(batch)), rows_ans[i : i + batch_size].to(lp.device)].cpu())
    return torch.cat(out).view(n_cfg, n_p)


def contrastive_experiment(
    model: HookedModel,
    target: Sequence[dict],
    baseline: Sequence[dict],
    config: ContrastiveConfig | None = None,
) -> ContrastiveResult:
    """``target``/``baseline``: matched lists of ``{"prompt": str, "answer": str}`` (pair i ↔ pair i)."""
    cfg = config or ContrastiveConfig()
    if len(target) != len(baseline) or len(target) < 2:
        raise InvalidConfigError(
            f"need matched target/baseline lists of >= 2 pairs, got {len(target)} and {len(baseline)}"
        )
    L, H = model.cfg.n_layers, model.cfg.n_heads
    if cfg.k >= L * H:
        raise InvalidConfigError(f"k={cfg.k} leaves no other heads to compare against (model has {L * H})")
    disc, held = _split(len(target), cfg.heldout_frac, cfg.seed)
    t_ans = [first_token_id(model, t["answer"]) for t in target]
    b_ans = [first_token_id(model, b["answer"]) for b in baseline]
    st = head_statistic(
        model, [target[i]["prompt"] for i in disc], [t_ans[i] for i in disc], cfg.statistic, cfg.batch_size
    )
    sb = head_statistic(
        model, [baseline[i]["prompt"] for i in disc], [b_ans[i] for i in disc], cfg.statistic, cfg.batch_size
    )
    delta = (st.mean(0) - sb.mean(0)).numpy()
    order = np.argsort(-np.abs(delta), axis=None)
    ranking = [
        (int(l), int(h), float(delta[l, h])) for l, h in (np.unravel_index(o, delta.shape) for o in order)
    ]
    top = [(l, h) for l, h, _ in ranking[: cfg.k]]
    others = [(l, h) for l in range(L) for h in range(H) if (l, h) not in top]
    rng = np.random.default_rng(cfg.seed + 1)
    draws = [
        [others[i] for i in rng.choice(len(others), size=cfg.k, replace=False)] for _ in range(cfg.n_random)
    ]
    keep = torch.ones(2 + cfg.n_random, L, H)
    for c, heads in enumerate([[], top, *draws]):
        for l, h in heads:
            keep[c, l, h] = 0
    lp = answer_logprob(
        model, [target[i]["prompt"] for i in held], [t_ans[i] for i in held], keep, cfg.batch_size
    ).numpy()
    clean = lp[0]
    per_prompt = lp[1] - clean
    effect = float(per_prompt.mean())
    rand = (lp[2:] - clean[None]).mean(1)
    p = (1 + int((rand <= effect).sum())) / (1 + cfg.n_random)
    return ContrastiveResult(
        config=asdict(cfg),
        discovery_indices=disc,
        heldout_indices=held,
        delta=delta.tolist(),
        ranking=ranking,
        top_heads=top,
        clean_metric=float(clean.mean()),
        effect=effect,
        effect_ci=bootstrap_ci(per_prompt, n_boot=cfg.n_boot, seed=cfg.seed),
        random_effects=rand.tolist(),
        random_mean=float(rand.mean()),
        random_interval=(float(np.quantile(rand, 0.025)), float(np.quantile(rand, 0.975))),
        p_value=p,
        per_prompt_effect=per_prompt.tolist(),
        random_heads=draws,
    )


def write_report(
    result: ContrastiveResult,
    out_dir: str | Path,
    title: str = "Contrastive experiment",
    description: str = "",
    model_name: str = "",
    plotlyjs: bool | str = True,
) -> dict[str, Path]:
    """Write ``result.json``, ``report.md`` and the two figures (HTML) into ``out_dir``.

    ``plotlyjs``: True inlines plotly.js (works offline, ~4 MB per figure); ``"cdn"`` links it (small files).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "result.json",
        "markdown": out / "report.md",
        "delta_figure": out / "delta.html",
        "effect_figure": out / "effect.html",
    }
    blob = {"title": title, "model": model_name, "description": description, **result.to_dict()}
    paths["json"].write_text(json.dumps(blob, indent=1))
    figures.write(result.figure(), paths["delta_figure"], plotlyjs=plotlyjs)
    figures.write(result.effect_figure(), paths["effect_figure"], plotlyjs=plotlyjs)
    r, c = result, result.config
    rows = "\n".join(f"| {i + 1} | L{l}H{h} | {d:+.4f} |" for i, (l, h, d) in enumerate(r.ranking[:10]))
    md = f"""# {title}

{description}

- Model: `{model_name}`
- Statistic: `{c["statistic"]}`; k = {c["k"]}; random sets = {c["n_random"]}; seed = {c["seed"]}
- Split (seeded): {len(r.discovery_indices)} discovery pairs {r.discovery_indices}, {len(r.heldout_indices)} held-out pairs {r.heldout_indices}

## Ranking (discovery split, by |Δ|)

| rank | head | Δ = target − baseline |
|---:|:---|---:|
{rows}

## Held-out effect of zero-ablating the top {c["k"]} heads {", ".join(f"L{l}H{h}" for l, h in r.top_heads)}

| quantity | value |
|:---|---:|
| clean mean log-prob of the answer | {r.clean_metric:.4f} |
| Δ log-prob, top-{c["k"]} ablation (mean) | {r.effect:.4f} |
| bootstrap 95% CI | [{r.effect_ci[0]:.4f}, {r.effect_ci[1]:.4f}] |
| Δ log-prob, random {c["k"]} heads (mean over {c["n_random"]} sets) | {r.random_mean:.4f} |
| random sets, 2.5–97.5 percentile | [{r.random_interval[0]:.4f}, {r.random_interval[1]:.4f}] |
| permutation p-value (one-sided) | {r.p_value:.4g} |

Figures: [Δ per head](delta.html), [effect vs random sets](effect.html).
"""
    paths["markdown"].write_text(md)
    return paths
