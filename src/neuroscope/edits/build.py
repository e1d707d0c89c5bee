"""One entry point for every edit: ``build_edit(model, sae, features, method=...)`` → a measured LoraEdit."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from neuroscope.edits.closed_form import (
    ablation_edit,
    ablation_reference,
    check_features,
    orthonormal_directions,
)
from neuroscope.edits.distill import DistillConfig, distill_edit, split_contexts
from neuroscope.edits.edit import LoraEdit, check_rank
from neuroscope.edits.fingerprint import model_sha256, sae_sha256
from neuroscope.edits.host import EditHost
from neuroscope.edits.measure import measure_edit
from neuroscope.edits.reference import ClampFeature
from neuroscope.errors import InvalidConfigError
from neuroscope.interventions import Intervention

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

Method = Literal["ablate", "clamp"]
METHODS = ("ablate", "clamp")


def reference_for(
    model: HookedModel,
    sae: SAE,
    features: Sequence[int],
    method: Method,
    value: float | None = None,
    scale: float | None = None,
    hook: str | None = None,
) -> list[Intervention]:
    """The exact hooked intervention an edit stands for."""
    hook = model.resolve_hook_name(hook or sae.cfg.hook_name)
    if method == "ablate":
        return ablation_reference(model, hook, orthonormal_directions(sae, features))
    if method == "clamp":
        return [ClampFeature(sae, check_features(sae, features), value=value, scale=scale, hook=hook)]
    raise InvalidConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def corpus_contexts(
    model: HookedModel, data: str | os.PathLike, n: int, ctx_len: int = 32, split: str = "train"
) -> torch.Tensor:
    """``[n, ctx_len]`` token contexts from a corpus (a prepared corpus folder, a text/JSONL file)."""
    from neuroscope.record.datasets import iter_contexts, load_documents, resolve_data

    path = resolve_data(data, split)
    ctxs = list(
        iter_contexts(load_documents(path), model.tokenizer, ctx_len, max_contexts=n, source=str(path))
    )
    return torch.stack(ctxs)


def measure_attached(
    model: HookedModel, edit: LoraEdit, reference: Sequence[Intervention], tokens: torch.Tensor
) -> dict:
    host = EditHost.of(model)
    name = f"__measure_{id(edit)}"
    host.add(name, edit)
    try:
        return measure_edit(model, name, reference, tokens).to_dict()
    finally:
        host.remove(name)


def build_edit(
    model: HookedModel,
    sae: SAE,
    features: Sequence[int],
    method: Method = "ablate",
    value: float | None = None,
    scale: float | None = None,
    rank: int = 8,
    contexts: torch.Tensor | None = None,
    distill: bool = False,
    cfg: DistillConfig | None = None,
    hook: str | None = None,
) -> LoraEdit:
    """Build, measure and describe an edit.

    ``ablate``: the closed form, measured against the hooked ``ProjectOut`` on ``contexts``; with
    ``distill=True`` (offered where the closed form is inexact) it is then distilled toward the hooked
    ablation, starting from the closed form. ``clamp``: distilled (needs ``contexts``, some where a feature
    fires and some where none does); ``value`` sets the feature where it fires, ``scale`` multiplies it."""
    check_rank(rank)
    hook = model.resolve_hook_name(hook or sae.cfg.hook_name)
    feats = check_features(sae, features)
    if method == "clamp" and (value is None) == (scale is None):
        raise InvalidConfigError("clamp needs exactly one of value= or scale=")
    if method == "ablate" and (value is not None or scale is not None):
        raise InvalidConfigError("ablate takes no value or scale (use method='clamp')")
    ref = reference_for(model, sae, feats, method, value, scale, hook)
    provenance = {
        "model": model.cfg.name,
        "model_sha256": model_sha256(model),
        "sae_sha256": sae_sha256(sae),
        "sae_width": sae.d_sae,
        "hook": hook,
    }
    if method == "ablate":
        edit = ablation_edit(model, sae, feats, rank, hook)
        edit.info.update(provenance)
        if contexts is not None:
            edit.info["measured"] = measure_attached(model, edit, ref, contexts[: min(16, len(contexts))])
        if not edit.info["exact"]:
            edit.info["offer"] = "the closed form is inexact here: build it with distill=True (--distill)"
        if not distill:
            return edit
        if contexts is None:
            raise InvalidConfigError("a distilled edit needs contexts (text) to distil on")
        data = split_contexts(model, sae, feats, contexts, cfg or DistillConfig(), hook)
        closed = edit.info
        edit, _ = distill_edit(model, ref, data, rank, cfg, hook, init=edit, info=dict(closed))
        edit.info["closed_form"] = {k: closed.get(k) for k in ("exact", "inexact_reasons", "measured")}
        edit.info["method"], edit.info["exact"] = "ablate", False
        edit.info["distilled"] = True
        edit.info["measured"] = measure_attached(model, edit, ref, data["fire_heldout"])
        return edit
    if contexts is None:
        raise InvalidConfigError("a clamp edit is distilled: give contexts (text) where the feature fires")
    cfg = cfg or DistillConfig()
    data = split_contexts(model, sae, feats, contexts, cfg, hook)
    L = int(hook.split(".")[1])
    info = {
        "method": "clamp",
        **provenance,
        "layer": L,
        "features": feats,
        "value": value,
        "scale": scale,
        "exact": False,
        "distilled": True,
    }
    edit, _ = distill_edit(model, ref, data, rank, cfg, hook, info=info)
    edit.info["measured"] = measure_attached(model, edit, ref, data["fire_heldout"])
    return edit
