"""Which modules write into the residual stream before an SAE's hook, and how to read them as ``W [out, in]``.

Every writer is the embedding or a sublayer's output projection (``attn.hook_z``'s module: ``o_proj``,
``c_proj``, ``dense``; ``mlp.hook_post``'s: ``down_proj``, ``c_proj``, ``dense_4h_to_h``), so the adapter
tables already name them. Reading every writer as a map ``W [out, in]`` (the embedding as ``Eᵀ``, GPT-2's
``Conv1D`` as ``weightᵀ``) lets one formula build every LoRA factor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import torch
from torch import nn

from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

Kind = Literal["embedding", "linear", "conv1d"]
_HOOK = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)$")
RESID_SITES = ("resid_pre", "resid_mid", "resid_post")


@dataclass(frozen=True)
class Target:
    path: str  # module path inside the Hugging Face model (what peft's target_modules names)
    kind: Kind
    layer: int | None  # None for the embedding


def base_module(module: nn.Module) -> nn.Module:
    """The original layer under a peft wrapper (which keeps it as ``base_layer``)."""
    while hasattr(module, "base_layer"):
        module = cast(nn.Module, module.base_layer)
    return module


def module_kind(module: nn.Module) -> Kind:
    m = base_module(module)
    if isinstance(m, nn.Embedding):
        return "embedding"
    if m.__class__.__name__ == "Conv1D":
        return "conv1d"
    if isinstance(m, nn.Linear):
        return "linear"
    raise InvalidConfigError(f"{m.__class__.__name__} is not a layer a LoRA edit can target")


def parse_hook(model: HookedModel, hook: str) -> tuple[int, str]:
    """``blocks.L.hook_<site>`` → ``(L, site)`` for the residual-stream hooks an edit can act before."""
    name = model.resolve_hook_name(hook)
    m = _HOOK.match(name)
    if not m:
        raise InvalidConfigError(
            f"Edits act on residual-stream SAEs: the hook must be blocks.L.hook_resid_pre|resid_mid|"
            f"resid_post|attn_out|mlp_out, got {name!r}."
        )
    return int(m.group(1)), m.group(2)


def _layer_path(model: HookedModel, layer: int, rel: str) -> str:
    return f"{model.adapter.layers}.{layer}.{rel}"


def attn_writer(model: HookedModel, layer: int) -> str:
    return _layer_path(model, layer, model.adapter.sites["attn.hook_z"].module)


def mlp_writer(model: HookedModel, layer: int) -> str:
    return _layer_path(model, layer, model.adapter.sites["mlp.hook_post"].module)


def writer_paths(model: HookedModel, hook: str, layers: range | None = None) -> list[str]:
    """Module paths that write into the stream before ``hook`` reads it (embedding first, then by layer).

    ``layers`` keeps only the sublayer writers of those layers (and drops the embedding unless it contains
    -1): the distilled edits use the last few layers only."""
    L, site = parse_hook(model, hook)
    if site == "attn_out":
        paths = [(L, attn_writer(model, L))]
    elif site == "mlp_out":
        paths = [(L, mlp_writer(model, L))]
    else:
        paths = [(-1, model.adapter.embed)]
        for l in range(L + 1):
            if l < L or site in ("resid_mid", "resid_post"):
                paths.append((l, attn_writer(model, l)))
            if l < L or site == "resid_post":
                paths.append((l, mlp_writer(model, l)))
    if layers is not None:
        paths = [(l, p) for l, p in paths if l in layers]
    return [p for _, p in paths]


def targets(model: HookedModel, paths: list[str]) -> list[Target]:
    out = []
    for p in paths:
        module = model.hf_model.get_submodule(p)
        prefix = model.adapter.layers + "."
        layer = int(p[len(prefix) :].split(".", 1)[0]) if p.startswith(prefix) else None
        out.append(Target(p, module_kind(module), layer))
    return out


def weight_out_in(model: HookedModel, path: str) -> torch.Tensor:
    """The writer as a map ``W [out, in]`` (the embedding: ``Eᵀ [d_model, vocab]``), detached."""
    m = base_module(model.hf_model.get_submodule(path))
    w = cast(torch.Tensor, m.weight).detach()
    kind = module_kind(m)
    return w.T if kind in ("embedding", "conv1d") else w


def module_shape(model: HookedModel, path: str) -> tuple[int, int]:
    """``(out, in)`` of a writer without copying its weight."""
    m = base_module(model.hf_model.get_submodule(path))
    w = cast(torch.Tensor, m.weight)
    kind = module_kind(m)
    a, b = int(w.shape[0]), int(w.shape[1])
    return (b, a) if kind in ("embedding", "conv1d") else (a, b)


def inexact_reasons(model: HookedModel, paths: list[str]) -> list[str]:
    """Why orthogonalising these writers is not the same as projecting the direction out of the stream."""
    reasons = []
    biased = []
    for p in paths:
        bias = getattr(base_module(model.hf_model.get_submodule(p)), "bias", None)
        if isinstance(bias, torch.Tensor) and bool(bias.detach().abs().max() > 0):
            biased.append(p)
    if biased:
        reasons.append(
            f"{len(biased)} output projections have biases (e.g. {biased[0]}); a LoRA delta cannot remove "
            "a bias's component along the directions"
        )
    if "norm" in model.adapter.sites["hook_attn_out"].module.lower():
        reasons.append(
            "sublayer outputs pass a norm before joining the residual stream (post-sublayer norms, as in "
            "Gemma 2/3), so orthogonalising the projection before it does not orthogonalise what is added"
        )
    if model.adapter.pos_embed:
        reasons.append(
            f"learned position embeddings ({model.adapter.pos_embed}) also write into the stream; they are "
            "not edited (peft applies one adapter to a position batch shared by every row)"
        )
    return reasons
