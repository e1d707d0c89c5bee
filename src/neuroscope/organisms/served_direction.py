"""The refusal direction as the workbench serves it: computed once by the case study's own code (difference
of means on the shipped harmful / harmless training prompts, the layer chosen on the validation split) or read
from a saved file, and cached as a safetensors vector file (tensor ``vector``, metadata ``layer`` and
``model``: the steering-vector store's format, so ``--vectors-dir`` and ``export-onnx --vectors`` read it too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.organisms.directions import choose_layer, diff_of_means
from neuroscope.organisms.generation import formatter

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.organisms.refusal import RefusalPrompts

SOURCE = "refusal-direction"  # the steering-vector source the workbench recognises (warning banner, audit)


@dataclass(frozen=True)
class RefusalDirection:
    layer: int  # applied at blocks.{layer}.hook_resid_pre
    vector: torch.Tensor  # [d_model], float32, CPU: mean(harmful) - mean(harmless), unnormalised
    model: str
    origin: str  # the file it came from, or how it was computed

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "norm": float(self.vector.norm()),
            "model": self.model,
            "origin": self.origin,
        }


def compute_refusal_direction(
    model: HookedModel,
    layer: int | None = None,
    prompts: RefusalPrompts | None = None,
    batch_size: int = 16,
    max_layer_frac: float = 0.8,
    prefix_tokens: int = 4,
) -> RefusalDirection:
    """The case study's direction: :func:`diff_of_means` over the formatted training prompts; at ``layer``, or
    at the layer :func:`choose_layer` picks on the validation split (as ``refusal_study`` does)."""
    from neuroscope.organisms.refusal import RefusalPrompts

    prompts = prompts or RefusalPrompts.shipped()
    fmt = formatter(model, warn=False)
    F = lambda ps: [fmt(p) for p in ps]  # noqa: E731
    directions = diff_of_means(
        model, F(prompts.harmful_train), F(prompts.harmless_train), batch_size=batch_size
    )
    if layer is None:
        prefix = model.tokenizer.encode(prompts.refusal, add_special_tokens=False)[:prefix_tokens]
        choice = choose_layer(
            model,
            directions,
            F(prompts.harmful_val),
            F(prompts.harmless_val),
            prefix,
            max_layer_frac,
            batch_size=batch_size,
        )
        layer, how = choice.best, f"layer chosen on the validation split ({choice.rule})"
    else:
        model.check_layer(layer)
        how = f"layer {layer} as asked"
    return RefusalDirection(
        int(layer),
        directions[layer].detach().float().cpu(),
        model.cfg.name,
        f"difference of means, {len(prompts.harmful_train)} harmful vs {len(prompts.harmless_train)} "
        f"harmless training prompts; {how}",
    )


def save_refusal_direction(direction: RefusalDirection, path: str | Path) -> Path:
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    meta = {"layer": str(direction.layer), "model": direction.model, "origin": direction.origin}
    save_file({"vector": direction.vector.contiguous()}, str(tmp), metadata=meta)
    tmp.replace(p)  # a reader never sees half a file
    return p


def load_refusal_direction(path: str | Path, model: HookedModel) -> RefusalDirection:
    """A saved direction, checked against ``model`` (width, layer); safetensors only."""
    from safetensors import safe_open

    from neuroscope.export.vectors import read_vector

    v = read_vector(path)
    v.check_width(model.cfg.d_model)
    model.check_layer(v.layer)
    with safe_open(str(path), framework="pt") as f:
        made_for = (f.metadata() or {}).get("model", "")
    return RefusalDirection(v.layer, v.vector, made_for or model.cfg.name, str(path))


def cached_refusal_direction(
    model: HookedModel, cache_dir: str | Path, layer: int | None = None, **kw: Any
) -> RefusalDirection:
    """:func:`compute_refusal_direction`, cached in ``cache_dir`` per model (and layer, when one is given)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.cfg.name).strip("._") or "model"
    path = Path(cache_dir) / f"refusal-{slug}{'' if layer is None else f'-L{layer}'}.safetensors"
    if path.is_file():
        d = load_refusal_direction(path, model)
        if d.model == model.cfg.name:
            return d
    d = compute_refusal_direction(model, layer, **kw)
    save_refusal_direction(d, path)
    return RefusalDirection(d.layer, d.vector, d.model, f"{d.origin}; cached in {path}")
