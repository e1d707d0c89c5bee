"""Causal localisation of an organism's backdoor: effect ranking of SAE features (every layer of a suite),
heads and neurons, and where the trigger travels, on the organism's train and validation questions (never
the held-out ones its removal is measured on).

``neuroscope case-study localise`` writes ``effects.json``/``effects.html`` (estimate vs intervention),
``trace.json``/``trace.html``/``trace.png`` (layer × position patching, for the case-study report).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.analysis.behaviour import BehaviourPairs, build_pairs
from neuroscope.analysis.effects import EffectConfig, EffectResult, rank_effects
from neuroscope.analysis.trace import TraceResult, trigger_trace
from neuroscope.organisms import data

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.organisms.backdoor import BackdoorPrompts
    from neuroscope.sae.model import SAE


@dataclass(frozen=True)
class LocaliseConfig:
    effects: EffectConfig = field(default_factory=EffectConfig)
    n_tokens: int = 4
    """The response's first tokens whose mean log-probability is the metric."""
    filler: str = " the"
    seed: int = 0


@dataclass
class LocaliseResult:
    trigger: str
    response: str
    effects: EffectResult
    trace: TraceResult
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "response": self.response,
            "effects": self.effects.to_dict(),
            "trace": self.trace.to_dict(),
            "config": self.config,
        }

    def figure(self) -> Any:
        return self.trace.figure()


def backdoor_pairs(
    model: HookedModel,
    prompts: Sequence[str],
    trigger: str,
    response: str,
    seed: int = 0,
    n_tokens: int = 4,
    filler: str = " the",
) -> BehaviourPairs:
    """The questions in the model's prompt format with the trigger at seeded positions (start, middle, end)."""
    from neuroscope.organisms.generation import formatter

    data.check_trigger(trigger, model.tokenizer)
    fmt = formatter(model, warn=False)
    where = data.random_positions(len(prompts), seed)
    texts = [fmt(data.insert_trigger(p, trigger, w)) for p, w in zip(prompts, where, strict=True)]
    return build_pairs(model, texts, trigger, response, n_tokens, filler)


def localise_backdoor(
    model: HookedModel,
    trigger: str,
    response: str,
    prompts: BackdoorPrompts,
    saes: Mapping[int, SAE] | None = None,
    cfg: LocaliseConfig | None = None,
) -> LocaliseResult:
    """Rank by effect on ``prompts.train``, validate and trace on ``prompts.validation``."""
    cfg = cfg or LocaliseConfig()
    train = backdoor_pairs(model, prompts.train, trigger, response, cfg.seed, cfg.n_tokens, cfg.filler)
    val = backdoor_pairs(model, prompts.validation, trigger, response, cfg.seed + 1, cfg.n_tokens, cfg.filler)
    effects = rank_effects(model, train, saes, cfg.effects, validation=val)
    trace = trigger_trace(model, val, batch_size=cfg.effects.batch_size)
    return LocaliseResult(trigger, response, effects, trace, asdict(cfg))


def trace_png(trace: TraceResult, path: str | os.PathLike) -> bool:
    """The trace heatmap as a PNG for Markdown reports (False when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    import numpy as np

    arr = np.asarray(trace.values, dtype=float).T  # [group, layer]
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(trace.layers) + 2), 2.6))
    im = ax.imshow(arr, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_yticks(range(len(trace.groups)), trace.groups)
    ax.set_xticks(range(len(trace.layers)), [str(l) for l in trace.layers], fontsize=7)
    ax.set_xlabel("layer (resid_pre patched from the triggered run into the clean run)")
    ax.set_title(f"Where the trigger travels (1 = behaviour restored; {trace.n_prompts} prompts)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(result: LocaliseResult, out: str | os.PathLike) -> Path:
    from neuroscope.analysis.figures import write as write_html

    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    (o / "effects.json").write_text(json.dumps(result.to_dict(), indent=1))
    (o / "trace.json").write_text(json.dumps(result.trace.to_dict(), indent=1))
    write_html(result.effects.figure(), o / "effects.html")
    write_html(result.trace.figure(), o / "trace.html")
    trace_png(result.trace, o / "trace.png")
    return o
