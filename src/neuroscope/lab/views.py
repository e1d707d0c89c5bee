"""What the Features view shows for one SAE feature, computed from the feature store and the model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.edits.reference import FIRST_EDITABLE_POS
from neuroscope.errors import IndexOutOfRangeError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.features import FeatureStore
    from neuroscope.sae.model import SAE


def check_feature(sae: SAE, f: int) -> None:
    if not 0 <= f < sae.d_sae:
        raise IndexOutOfRangeError("feature", f, sae.d_sae)


@torch.no_grad()
def sae_acts(
    model: HookedModel, sae: SAE, hook: str, ids: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``[batch, pos, d_sae]`` latents at ``hook`` (the forward stops after the hook's layer)."""
    layer = int(hook.split(".")[1])
    _, cache = model.run_with_cache(ids, names=[hook], stop_at_layer=layer + 1, attention_mask=mask)
    return sae.encode(cache[hook].float())


def logit_effects(model: HookedModel, sae: SAE, f: int, k: int = 10) -> dict[str, list]:
    """The tokens the decoder direction promotes and suppresses (``W_dec[f] @ W_U``, no final norm)."""
    logits = sae.W_dec[f].detach().float().to(model.device) @ model.W_U.float()
    top, bottom = logits.topk(k), (-logits).topk(k)
    dec = model.tokenizer.decode
    return {
        "promoted": [
            {"token": dec([int(i)]), "value": float(v)} for v, i in zip(top.values, top.indices, strict=True)
        ],
        "suppressed": [
            {"token": dec([int(i)]), "value": -float(v)}
            for v, i in zip(bottom.values, bottom.indices, strict=True)
        ],
    }


def density_histogram(store: FeatureStore, f: int, bins: int = 30) -> dict[str, Any]:
    """log10 density of every feature (dead ones apart), and the bin this feature falls in."""
    d = store.cols["density"].astype(float)
    live = d > 0
    logd = np.log10(d[live]) if live.any() else np.array([-6.0])
    counts, edges = np.histogram(logd, bins=bins)
    own = float(d[f])
    own_bin = (
        int(np.clip(np.searchsorted(edges, np.log10(own), side="right") - 1, 0, bins - 1))
        if own > 0
        else None
    )
    return {
        "edges": edges.round(4).tolist(),
        "counts": counts.tolist(),
        "dead": int((~live).sum()),
        "bin": own_bin,
        "density": own,
    }


@torch.no_grad()
def contexts_with_acts(
    model: HookedModel, sae: SAE, hook: str, store: FeatureStore, f: int, bos: int | None
) -> list[dict[str, Any]]:
    """The stored top contexts with the feature's activation on every token of each window. The windows were
    cut from longer recorded contexts, so they are re-run here behind the token that starts every context;
    the recorded activation of the centre token is kept as ``activation``."""
    ctxs = store.contexts(f)
    if not ctxs:
        return []
    windows = [list(c["window_ids"]) for c in ctxs]
    lead = [bos] if bos is not None else []
    width = max(len(w) for w in windows) + len(lead)
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.full((len(windows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, w in enumerate(windows):
        ids[i, : len(lead) + len(w)] = torch.tensor(lead + w)
        mask[i, : len(lead) + len(w)] = 1
    z = sae_acts(model, sae, hook, ids.to(model.device), mask.to(model.device))[..., f].cpu()
    out = []
    for i, c in enumerate(ctxs):
        n = len(windows[i])
        out.append(
            {
                "tokens": c["window_tokens"],
                "center": int(c["center"]),
                "activation": float(c["activation"]),
                "acts": [round(float(v), 4) for v in z[i, len(lead) : len(lead) + n]],
            }
        )
    return out


@torch.no_grad()
def prompt_acts(model: HookedModel, sae: SAE, hook: str, prompt: str) -> tuple[list[str], torch.Tensor]:
    """The prompt's tokens and ``[pos, d_sae]`` latents (position 0, the attention sink, zeroed)."""
    ids = model.to_tokens(prompt)
    z = sae_acts(model, sae, hook, ids)[0].cpu()
    z[:FIRST_EDITABLE_POS] = 0
    return [model.tokenizer.decode([int(i)]) for i in ids[0]], z


def active_features(z_pos: torch.Tensor, k: int = 20) -> list[tuple[int, float]]:
    """The features active at one position, strongest first."""
    vals, idx = z_pos.topk(min(k, z_pos.shape[0]))
    return [(int(i), float(v)) for v, i in zip(vals, idx, strict=True) if float(v) > 0]
