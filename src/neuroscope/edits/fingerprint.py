"""SHA-256 fingerprints of weights: a model's (what a bundle was made for) and an SAE's (which SAE an edit
was built from), independent of file layout, so a re-saved copy of the same weights matches."""

from __future__ import annotations

import hashlib
import weakref
from typing import TYPE_CHECKING, Any, cast

import torch

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

_MODEL_HASHES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _update(h: Any, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def model_sha256(model: HookedModel | torch.nn.Module) -> str:
    """Over every parameter of the base model (name-sorted; peft's wrappers and LoRA factors ignored, a
    tied pair counted once); memoised per model object."""
    hf = cast(torch.nn.Module, getattr(model, "hf_model", model))
    if hf in _MODEL_HASHES:
        return _MODEL_HASHES[hf]
    named = {}
    for name, p in hf.named_parameters():
        if "lora_" in name:
            continue
        named[name.replace(".base_layer", "")] = p
    h = hashlib.sha256()
    for name in sorted(named):
        _update(h, name, named[name])
    digest = h.hexdigest()
    _MODEL_HASHES[hf] = digest
    return digest


def sae_sha256(sae: SAE) -> str:
    h = hashlib.sha256()
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        _update(h, name, getattr(sae, name).float())
    return h.hexdigest()
