"""Several features at once, possibly read at several layers (the SAEs of a suite): one hooked ablation and
its closed-form LoRA.

Each read point ``hook_h`` carries directions ``D_h`` (the selected features' decoder rows). The hooked edit
projects out, at every residual site ``s``, the span ``S(s)`` of every direction read at or after ``s``; the
LoRA gives every writer ``w`` the factors of ``(I − Q_w Q_wᵀ) W_w`` with ``Q_w`` an orthonormal basis of
``S(w)``, the span of the directions read after that writer. Why this composes exactly: the spans shrink
along the stream (a site reads every direction a later site does), so the stream that reaches a site is
already orthogonal to its span and projecting ``x + w(x)`` equals adding the projected writer output,
which is what the LoRA adds. Summing separate per-layer edits (``ΔW = −Q₁Q₁ᵀW − Q₂Q₂ᵀW``) would be exact
only if the layers' directions were orthogonal; the union's basis is exact whatever their overlap. Rank =
the dimension of the largest span (at most the number of directions), padded with zeros to ``r``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.edits.closed_form import check_features
from neuroscope.edits.edit import LoraEdit, check_rank
from neuroscope.edits.targets import (
    RESID_SITES,
    inexact_reasons,
    parse_hook,
    targets,
    weight_out_in,
    writer_paths,
)
from neuroscope.errors import InvalidConfigError
from neuroscope.interventions import Intervention, ProjectOut

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE


def parse_layer_features(text: str) -> list[tuple[int, int]]:
    """``"16:123,16:77,20:5"`` → ``[(16, 123), (16, 77), (20, 5)]`` (``LAYER:FEATURE`` pairs)."""
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        layer, sep, feat = part.partition(":")
        try:
            if not sep:
                raise ValueError
            out.append((int(layer), int(feat)))
        except ValueError:
            raise InvalidConfigError(
                f"--features takes LAYER:FEATURE pairs separated by commas (e.g. 16:123,20:5), got {part!r}"
            ) from None
    if not out:
        raise InvalidConfigError("select at least one LAYER:FEATURE pair")
    return out


def orth(D: torch.Tensor) -> torch.Tensor:
    """An orthonormal float64 basis ``[d, k']`` of the columns of ``D [d, k]`` (dependent columns dropped)."""
    Q, R = torch.linalg.qr(D.double())
    diag = R.diagonal().abs()
    if diag.numel() == 0 or float(diag.max()) == 0:
        return Q[:, :0]
    return Q[:, diag > 1e-6 * float(diag.max())]


def feature_directions(
    model: HookedModel, saes: Mapping[int, SAE], pairs: Sequence[tuple[int, int]]
) -> dict[str, torch.Tensor]:
    """``{hook: D [d_model, k]}``: the selected features' decoder rows, grouped by the SAE (layer) reading them."""
    by_layer: dict[int, list[int]] = {}
    for layer, feat in pairs:
        by_layer.setdefault(int(layer), []).append(int(feat))
    out: dict[str, torch.Tensor] = {}
    for layer, feats in by_layer.items():
        if layer not in saes:
            raise InvalidConfigError(
                f"no SAE at layer {layer} (the suite has layers {sorted(saes)}): pick features of those layers"
            )
        sae = saes[layer]
        hook = model.resolve_hook_name(sae.cfg.hook_name)
        out[hook] = sae.W_dec.detach()[check_features(sae, feats)].double().T
    return out


def _sites_before(model: HookedModel, hook: str) -> list[tuple[str, int]]:
    """The residual sites ``(site, layer)`` where something written before ``hook`` joins the stream
    (the same sites ``ablation_reference`` projects at)."""
    L, site = parse_hook(model, hook)
    if site not in RESID_SITES:
        raise InvalidConfigError(
            f"a multi-layer edit reads residual-stream hooks (resid_pre/mid/post), got {hook!r}"
        )
    out = [("resid_pre", 0)]
    if not model.cfg.parallel_attn_mlp:
        out += [("resid_mid", l) for l in range(L + (site != "resid_pre"))]
    out += [("resid_post", l) for l in range(L + (site == "resid_post"))]
    return out


def multi_ablation_reference(
    model: HookedModel, directions: Mapping[str, torch.Tensor]
) -> list[Intervention]:
    """The hooked edit: at each site, project out the span of every direction read at or after it."""
    spans: dict[tuple[str, int], list[torch.Tensor]] = {}
    for hook, D in directions.items():
        for s in _sites_before(model, model.resolve_hook_name(hook)):
            spans.setdefault(s, []).append(D)
    ivs: list[Intervention] = []
    for (site, layer), Ds in spans.items():
        for q in orth(
            torch.cat(Ds, 1)
        ).T:  # orthonormal: projecting one after another = the span's projection
            ivs.append(ProjectOut(q, layers=[layer], site=site))
    return ivs


def multi_ablation_edit(
    model: HookedModel,
    directions: Mapping[str, torch.Tensor],
    rank: int = 8,
    info: dict[str, Any] | None = None,
) -> LoraEdit:
    """The closed-form LoRA of :func:`multi_ablation_reference` (exact where ``inexact_reasons`` is empty)."""
    if not directions:
        raise InvalidConfigError("select at least one direction")
    for hook, D in directions.items():
        if D.ndim != 2 or D.shape[0] != model.cfg.d_model:
            raise InvalidConfigError(
                f"directions read at {hook} must be [d_model={model.cfg.d_model}, k], got {list(D.shape)}"
            )
    per_writer: dict[str, list[torch.Tensor]] = {}
    for hook, D in directions.items():
        for p in writer_paths(model, model.resolve_hook_name(hook)):
            per_writer.setdefault(p, []).append(D)
    bases = {p: orth(torch.cat(Ds, 1)) for p, Ds in per_writer.items()}
    needed = max(Q.shape[1] for Q in bases.values())
    check_rank(rank, needed)
    dtype = torch.float64 if model.dtype == torch.float64 else torch.float32
    order = list(
        dict.fromkeys(p for h in directions for p in writer_paths(model, model.resolve_hook_name(h)))
    )
    tgts = targets(model, order)
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for t in tgts:
        Q = bases[t.path]
        Qp = torch.zeros(model.cfg.d_model, rank, dtype=torch.float64)
        Qp[:, : Q.shape[1]] = Q
        Qd = Qp.to(dtype)
        W = weight_out_in(model, t.path).to(dtype)
        modules[t.path] = ((Qd.T.to(W.device) @ W).cpu().contiguous(), (-Qd).contiguous())
    reasons = inexact_reasons(model, order)
    layers = sorted({parse_hook(model, h)[0] for h in directions})
    meta = {
        "method": "ablate",
        "family": "multi-feature ablate",
        "model": model.cfg.name,
        "hooks": [model.resolve_hook_name(h) for h in directions],
        "layers": layers,
        "directions": {model.resolve_hook_name(h): int(D.shape[1]) for h, D in directions.items()},
        "span_dims": int(needed),
        "exact": not reasons,
        "inexact_reasons": reasons,
        "composition": "each writer loses the span of every direction read after it (exact across layers)",
        **(info or {}),
    }
    return LoraEdit(rank, modules, frozenset(t.path for t in tgts if t.kind == "embedding"), meta)
