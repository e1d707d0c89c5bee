"""The ``ablate`` edit in closed form: directional ablation by weight orthogonalisation, as a LoRA.

For orthonormal directions ``Q [d_model, k]`` every writer ``W [d_model, in]`` of the residual stream before
the SAE's hook becomes ``W' = (I − QQᵀ) W = W + B A`` with ``B = −Q`` and ``A = QᵀW`` (padded with zeros to
rank ``r``; ``lora_alpha = r`` so the scale is 1). The embedding is the writer ``Eᵀ``: its rows lose their
component along ``Q``. With no biases on the writers and nothing between a writer and the stream, the
stream up to the hook then never carries the directions: the same as projecting them out of the residual at
every layer (``ProjectOut``), which :func:`ablation_reference` builds for comparison (Arditi et al. 2024).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.edits.edit import LoraEdit, check_rank
from neuroscope.edits.targets import (
    inexact_reasons,
    parse_hook,
    targets,
    weight_out_in,
    writer_paths,
)
from neuroscope.errors import InvalidConfigError, UnknownFeatureError
from neuroscope.interventions import Intervention, ProjectOut

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE


def check_features(sae: SAE, features: Sequence[int]) -> list[int]:
    feats = [int(f) for f in features]
    if not feats:
        raise InvalidConfigError("select at least one feature")
    bad = [f for f in feats if not 0 <= f < sae.d_sae]
    if bad:
        raise UnknownFeatureError(
            f"feature {bad[0]} does not exist: this SAE has features 0..{sae.d_sae - 1} ({sae.d_sae} in all)."
        )
    return list(dict.fromkeys(feats))


def orthonormal_directions(sae: SAE, features: Sequence[int]) -> torch.Tensor:
    """``Q [d_in, k]``: an orthonormal basis of the features' decoder rows (dependent rows dropped)."""
    D = sae.W_dec.detach()[check_features(sae, features)].double().T  # [d, k]
    Q, R = torch.linalg.qr(D)
    diag = R.diagonal().abs()
    keep = diag > 1e-6 * float(diag.max())
    return Q[:, keep]


def ablation_reference(model: HookedModel, hook: str, Q: torch.Tensor) -> list[Intervention]:
    """The hooked ablation the LoRA must equal: ``ProjectOut`` of every direction wherever a writer
    before ``hook`` has added to the stream (resid_pre of layer 0 for the embedding, resid_mid after each
    attention block, resid_post after each MLP; for parallel blocks resid_post after both)."""
    L, site = parse_hook(model, hook)
    parallel = model.cfg.parallel_attn_mlp
    ivs: list[Intervention] = []
    for q in Q.T:
        if site in ("attn_out", "mlp_out"):
            ivs.append(ProjectOut(q, layers=[L], site=site))
            continue
        ivs.append(ProjectOut(q, layers=[0], site="resid_pre"))
        mid_layers = list(range(L + (site != "resid_pre")))
        post_layers = list(range(L + (site == "resid_post")))
        if not parallel and mid_layers:
            ivs.append(ProjectOut(q, layers=mid_layers, site="resid_mid"))
        if post_layers:
            ivs.append(ProjectOut(q, layers=post_layers, site="resid_post"))
    return ivs


def _checked(
    model: HookedModel, sae: SAE, features: Sequence[int], rank: int, hook: str | None
) -> tuple[str, list[int], torch.Tensor]:
    """The hook, features and orthonormal directions of an ablation, checked once for both the adapter and
    the deferred (hooked) path, so the two refuse the same inputs with the same errors."""
    hook = model.resolve_hook_name(hook or sae.cfg.hook_name)
    feats = check_features(sae, features)
    if sae.d_in != model.cfg.d_model:
        raise InvalidConfigError(
            f"The SAE has d_in={sae.d_in} but the residual stream of {model.cfg.name} is {model.cfg.d_model} wide."
        )
    Q = orthonormal_directions(sae, feats)
    check_rank(rank, Q.shape[1])
    return hook, feats, Q


def _info(
    model: HookedModel, hook: str, feats: list[int], Q: torch.Tensor, reasons: list[str]
) -> dict[str, Any]:
    """The manifest info of an ablation: the deferred path must promise exactly what the adapter records."""
    L, _ = parse_hook(model, hook)
    return {
        "method": "ablate",
        "model": model.cfg.name,
        "hook": hook,
        "layer": L,
        "features": feats,
        "value": None,
        "directions": int(Q.shape[1]),
        "exact": not reasons,
        "inexact_reasons": reasons,
    }


def ablation_edit(
    model: HookedModel,
    sae: SAE,
    features: Sequence[int],
    rank: int = 8,
    hook: str | None = None,
) -> LoraEdit:
    """The closed-form ablation of ``features``' decoder directions before ``hook`` (default: the SAE's)."""
    hook, feats, Q = _checked(model, sae, features, rank, hook)
    paths = writer_paths(model, hook)
    tgts = targets(model, paths)
    # factors in the model's precision (at least float32): on a float64 model the LoRA then equals the hooked
    # ablation to ~1e-12; on a float32 one A = QᵀW is as exact as float32 stores it, without copying the
    # embedding to float64 (a 49k x 576 table: most of the build time)
    dtype = torch.float64 if model.dtype == torch.float64 else torch.float32
    Qp = torch.zeros(model.cfg.d_model, rank, dtype=torch.float64)
    Qp[:, : Q.shape[1]] = Q
    Qd = Qp.to(dtype)
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for t in tgts:
        W = weight_out_in(model, t.path).to(dtype)  # [d_model, in]
        modules[t.path] = ((Qd.T.to(W.device) @ W).cpu().contiguous(), (-Qd).contiguous())
    reasons = inexact_reasons(model, paths)
    info = _info(model, hook, feats, Q, reasons)
    return LoraEdit(rank, modules, frozenset(t.path for t in tgts if t.kind == "embedding"), info)


def deferred_ablation(
    model: HookedModel, sae: SAE, features: Sequence[int], rank: int = 8, hook: str | None = None
) -> tuple[list[Intervention], int, dict[str, Any]] | None:
    """What a live request needs of :func:`ablation_edit` before its adapter exists: the hooked ablation it
    equals (``ProjectOut``), its first changed layer and its manifest info, checked as the edit would be;
    None where the LoRA is not exact (then only the adapter itself gives its answer)."""
    hook, feats, Q = _checked(model, sae, features, rank, hook)
    paths = writer_paths(model, hook)
    if inexact_reasons(model, paths):
        return None
    ivs = ablation_reference(model, hook, Q)
    first = min(l for iv in ivs for l in (iv.layers or [0]))  # type: ignore[attr-defined]
    info = _info(model, hook, feats, Q, [])
    return ivs, first, info
