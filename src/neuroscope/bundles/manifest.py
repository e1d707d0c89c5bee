"""The bundle layout and ``manifest.json``.

```
BUNDLE/manifest.json
BUNDLE/saes/<name>/cfg.json, sae_weights.safetensors   (SAELens layout; features/ when computed)
BUNDLE/lora/<edit>/adapter_config.json, adapter_model.safetensors   (a plain PEFT adapter)
```
The manifest: format and version; the model (name, type, SHA-256 of its weights); per SAE its path, hook,
layer, width, k; per edit its path, SAE, features, method, value, rank, target modules and measured effect;
the user's feature labels; and the SHA-256 of every other file in the bundle.
"""

from __future__ import annotations

from typing import Any

FORMAT = "neuroscope-bundle"
VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST = "manifest.json"


def model_entry(model: Any) -> dict[str, Any]:
    from neuroscope.edits.fingerprint import model_sha256

    c = model.cfg
    return {
        "name": c.name,
        "model_type": c.model_type,
        "d_model": c.d_model,
        "n_layers": c.n_layers,
        "weights_sha256": model_sha256(model),
    }


def sae_entry(name: str, sae: Any, sha: str) -> dict[str, Any]:
    c = sae.cfg
    hook = c.hook_name
    layer = int(hook.split(".")[1]) if hook.startswith("blocks.") else None
    return {
        "path": f"saes/{name}",
        "hook": hook,
        "layer": layer,
        "d_in": c.d_in,
        "width": c.d_sae,
        "architecture": c.arch,
        "k": c.k if c.arch == "topk" else None,
        "weights_sha256": sha,
    }


EDIT_KEYS = ("method", "features", "value", "scale", "layer", "hook", "exact", "inexact_reasons", "distilled")


def edit_entry(name: str, edit: Any, sae_name: str | None) -> dict[str, Any]:
    info = edit.info
    return {
        "path": f"lora/{name}",
        "sae": sae_name,
        **{k: info.get(k) for k in EDIT_KEYS},
        "rank": edit.rank,
        "lora_alpha": edit.rank,
        "target_modules": edit.target_modules,
        "measured": info.get("measured"),
        "distill": info.get("distill"),
    }
