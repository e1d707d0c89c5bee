"""SAE features between base and tuned model: whose activations changed (on triggered and clean prompts),
and how ΔW's top residual-stream directions align with chosen features' decoder rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from neuroscope.diff.weights import ModuleDiff
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE


def mean_activations(
    model: HookedModel, sae: SAE, prompts: Sequence[str], batch_size: int = 8
) -> torch.Tensor:
    """``[d_sae]`` each feature's mean activation over the prompts' real tokens (the first left out)."""
    name = model.resolve_hook_name(sae.cfg.hook_name)
    layer = int(name.split(".")[1])
    tot, count = torch.zeros(sae.d_sae), 0
    for i in range(0, len(prompts), batch_size):
        t = model.tokenize(list(prompts[i : i + batch_size]))
        with torch.no_grad():
            _, c = model.run_with_cache(
                t.ids, names=[name], attention_mask=t.attention_mask, stop_at_layer=layer + 1
            )
            z = sae.encode(c[name].float()).cpu()
        real = torch.ones(z.shape[:2]) if t.attention_mask is None else t.attention_mask.float().cpu()
        if real.shape[1] > 1:
            real[:, 0] = 0
        tot += (z * real[..., None]).sum((0, 1))
        count += int(real.sum())
    return tot / max(count, 1)


def feature_changes(
    base: HookedModel,
    tuned: HookedModel,
    saes: Mapping[int, SAE],
    prompts: Mapping[str, Sequence[str]],
    top: int = 10,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Per SAE layer and prompt kind: the ``top`` features whose mean activation changed most (|tuned − base|)."""
    rows = []
    for layer, sae in sorted(saes.items()):
        for kind, ps in prompts.items():
            a_t = mean_activations(tuned, sae, ps, batch_size)
            a_b = mean_activations(base, sae, ps, batch_size)
            d = a_t - a_b
            idx = d.abs().topk(min(top, d.numel())).indices
            rows.append(
                {
                    "layer": layer,
                    "prompts": kind,
                    "features": [
                        {
                            "feature": int(f),
                            "tuned": float(a_t[f]),
                            "base": float(a_b[f]),
                            "change": float(d[f]),
                        }
                        for f in idx
                    ],
                }
            )
    return rows


def alignment(
    modules: Sequence[ModuleDiff], saes: Mapping[int, SAE], features: Sequence[tuple[int, int]]
) -> list[dict[str, Any]]:
    """For each (layer, feature): the largest |cosine| between its decoder row and the top left singular
    vectors of ΔW of every residual-writing module (attention/MLP output), and which module and direction
    gives it. For scale: a random unit vector's |cosine| with a fixed one is about sqrt(2 / (π d_model))."""
    out = []
    for layer, f in features:
        if layer not in saes:
            continue
        d = saes[layer].W_dec[f].detach().float().cpu()
        d = d / d.norm().clamp_min(1e-12)
        best: dict[str, Any] = {
            "layer": layer,
            "feature": f,
            "cosine": 0.0,
            "module": None,
            "direction": None,
        }
        for m in modules:
            if not m.writes_residual or m.u is None or m.u.shape[0] != d.shape[0]:
                continue
            cos = (m.u.T @ d).abs()
            j = int(cos.argmax())
            if float(cos[j]) > best["cosine"]:
                best.update(cosine=float(cos[j]), module=m.name, direction=j)
        out.append(best)
    return out
