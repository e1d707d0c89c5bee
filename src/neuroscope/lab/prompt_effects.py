"""The evaluation panel's list for the current prompt: the attached SAEs' features ranked by their causal
effect on the organism's response (``neuroscope.analysis.effects.feature_effects``: attribution patching of
the behaviour metric, the prompt against its token-aligned clean counterpart), each with how strongly it
fires with and without the trigger. Detection is not causation: the list shows both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

MAX_TOP = 50


@dataclass
class PromptEffects:
    prompt: str
    trigger: str
    response: str
    metric: str
    metric_triggered: float  # the behaviour metric on this prompt, unedited
    metric_clean: float  # on its clean counterpart (the trigger's tokens replaced by filler)
    features: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "trigger": self.trigger,
            "response": self.response,
            "metric": self.metric,
            "metric_triggered": self.metric_triggered,
            "metric_clean": self.metric_clean,
            "features": self.features,
        }


def prompt_effects(
    model: HookedModel,
    saes: Mapping[str, SAE],
    prompt: str,
    trigger: str,
    response: str,
    top: int = 10,
    labels: Mapping[str, Mapping[int, str]] | None = None,
    n_tokens: int = 4,
) -> PromptEffects:
    """The ``top`` features of ``saes`` (name -> SAE) by estimated effect on ``response`` for ``prompt`` (plain
    text containing ``trigger``; chat-formatted here as the organisms are), with their max activation on the
    prompt and on its clean counterpart."""
    from neuroscope.analysis.behaviour import build_pairs, run_metric, with_clean_answer
    from neuroscope.analysis.effects import EffectConfig, _editable, feature_effects
    from neuroscope.organisms.generation import formatter

    if not saes:
        raise InvalidConfigError("No SAE is attached: attach one to rank its features by effect.")
    if not 1 <= top <= MAX_TOP:
        raise InvalidConfigError(f"top must be in 1..{MAX_TOP}, got {top}")
    # the server's model thread runs jobs in inference mode; the estimates need gradients, and tensors
    # made in inference mode cannot be saved for backward
    with torch.inference_mode(False):
        cfg = EffectConfig()
        pairs = build_pairs(model, [formatter(model, warn=False)(prompt)], trigger, response, n_tokens)
        pairs = with_clean_answer(model, pairs, cfg.batch_size)
        est = feature_effects(model, pairs, saes, cfg)
        rows = [
            (name, int(f), float(v))
            for name, e in est.items()
            for v, f in zip(*e.topk(min(top, len(e))), strict=True)
        ]
        rows = sorted(rows, key=lambda r: -r[2])[:top]
        hooks = {n: model.resolve_hook_name(s.cfg.hook_name) for n, s in saes.items()}
        mask = pairs.mask.to(model.device)
        with torch.no_grad():
            _, trig = model.run_with_cache(
                pairs.triggered.to(model.device), names=sorted(set(hooks.values())), attention_mask=mask
            )
            _, clean = model.run_with_cache(
                pairs.clean.to(model.device), names=sorted(set(hooks.values())), attention_mask=mask
            )
        real = _editable(mask.bool())[..., None]
        feats = []
        for name, f, v in rows:
            sae, h = saes[name], hooks[name]
            zt = (sae.encode(trig[h].float())[..., f : f + 1] * real).amax().item()
            zc = (sae.encode(clean[h].float())[..., f : f + 1] * real).amax().item()
            feats.append(
                {
                    "sae": name,
                    "feature": f,
                    "effect": round(v, 6),
                    "act_triggered": round(zt, 4),
                    "act_clean": round(zc, 4),
                    "label": (labels or {}).get(name, {}).get(f),
                }
            )
        m_t = float(run_metric(model, pairs, "triggered", metric=cfg.metric)[0])
        m_c = float(run_metric(model, pairs, "clean", metric=cfg.metric)[0])
        return PromptEffects(prompt, trigger, response, cfg.metric, m_t, m_c, feats)
