"""Edits that are not linear in the weights (``clamp``; ``ablate`` where the closed form is inexact): a
rank-r LoRA fitted by distillation.

The loss is the KL from the hooked reference (the exact intervention) to the LoRA-edited model, over every
position of two kinds of context in equal parts: contexts where a selected feature fires, whose reference is
the edited model, and contexts where none fires, whose reference is then the unedited model (a clamp where
the feature fires changes nothing elsewhere). The LoRA sits on the residual writers of the last
``layers_back`` layers up to the SAE's hook, so backpropagation stops there; held-out KL is reported next to
the KL between the hooked reference and the unedited model (what an edit that did nothing would score).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.edits.edit import LoraEdit, check_rank
from neuroscope.edits.host import EditHost
from neuroscope.edits.measure import kl_per_token
from neuroscope.edits.reference import FIRST_EDITABLE_POS, feature_acts
from neuroscope.edits.targets import module_shape, parse_hook, targets, writer_paths
from neuroscope.errors import InvalidConfigError
from neuroscope.interventions import Intervention

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 120
    batch_size: int = 8  # contexts per step, half where a feature fires, half where none does
    lr: float = 2e-3
    layers_back: int = 4  # LoRA on the writers of layers L-layers_back+1 .. L
    heldout_fraction: float = 0.25
    max_contexts_per_kind: int = 96
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.layers_back < 1:
            raise InvalidConfigError("steps >= 1, batch_size >= 2 and layers_back >= 1 are required")
        if not 0 < self.heldout_fraction < 1:
            raise InvalidConfigError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")


@dataclass
class DistillReport:
    steps: int
    seconds: float
    n_train: dict[str, int]
    n_heldout: dict[str, int]
    heldout_kl_hooked_to_edit: dict[str, float]  # how close the LoRA gets to the exact hooked edit
    heldout_kl_hooked_to_base: dict[str, float]  # what doing nothing would score
    loss_history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def figure(self) -> Any:
        import plotly.graph_objects as go

        fig = go.Figure(go.Scatter(y=self.loss_history, mode="lines", name="train KL"))
        fig.update_layout(
            title="Distillation: KL(hooked ‖ LoRA) per step", xaxis_title="step", yaxis_title="nats"
        )
        return fig


def split_contexts(
    model: HookedModel,
    sae: SAE,
    features: Sequence[int],
    contexts: torch.Tensor,
    cfg: DistillConfig,
    hook: str | None = None,
) -> dict[str, torch.Tensor]:
    """Contexts where some selected feature fires (``fire``) and where none does (``quiet``), each split
    into train and held-out parts by a seeded permutation."""
    acts = []
    for i in range(0, contexts.shape[0], 16):
        acts.append(feature_acts(model, sae, contexts[i : i + 16], features, hook).amax(dim=(1, 2)).cpu())
    fires = torch.cat(acts) > 0
    gen = torch.Generator().manual_seed(cfg.seed)
    out: dict[str, torch.Tensor] = {}
    for kind, mask in (("fire", fires), ("quiet", ~fires)):
        idx = torch.nonzero(mask).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)][: cfg.max_contexts_per_kind]
        if idx.numel() < 2:
            raise InvalidConfigError(
                f"only {idx.numel()} of {contexts.shape[0]} contexts are {'ones where the features fire' if kind == 'fire' else 'free of the features'}: "
                "give more (or other) text to distil on"
            )
        n_held = max(1, int(round(idx.numel() * cfg.heldout_fraction)))
        out[f"{kind}_heldout"] = contexts[idx[:n_held]]
        out[f"{kind}_train"] = contexts[idx[n_held:]]
    return out


def _kl(
    model: HookedModel, host: EditHost, name: str, ref: Sequence[Intervention], t: torch.Tensor
) -> torch.Tensor:
    with torch.no_grad():
        target = model(t, interventions=list(ref)).float()
    with host.use([name]):
        logits = model(t).float()
    return kl_per_token(target, logits)[:, FIRST_EDITABLE_POS:].mean()


@torch.no_grad()
def heldout_kl(
    model: HookedModel, edit_name: str | None, reference: Sequence[Intervention], t: torch.Tensor
) -> float:
    host = EditHost.of(model)
    total = 0.0
    for i in range(0, t.shape[0], 8):
        b = t[i : i + 8].to(model.device)
        target = model(b, interventions=list(reference)).float()
        with host.use([edit_name] if edit_name else []):
            logits = model(b).float()
        total += float(kl_per_token(target, logits)[:, FIRST_EDITABLE_POS:].sum())
    return total / (t.shape[0] * (t.shape[1] - FIRST_EDITABLE_POS))


def initial_edit(model: HookedModel, hook: str, rank: int, layers_back: int, seed: int) -> LoraEdit:
    """LoRA's usual start (B = 0, small random A) on the writers of the last ``layers_back`` layers."""
    L, _ = parse_hook(model, hook)
    paths = writer_paths(model, hook, layers=range(max(0, L - layers_back + 1), L + 1))
    gen = torch.Generator().manual_seed(seed)
    modules = {}
    for t in targets(model, paths):
        out, inp = module_shape(model, t.path)
        modules[t.path] = (torch.randn(rank, inp, generator=gen) / math.sqrt(inp), torch.zeros(out, rank))
    return LoraEdit(rank, modules, frozenset(t.path for t in targets(model, paths) if t.kind == "embedding"))


def distill_edit(
    model: HookedModel,
    reference: Sequence[Intervention],
    data: dict[str, torch.Tensor],
    rank: int = 8,
    cfg: DistillConfig | None = None,
    hook: str = "",
    init: LoraEdit | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[LoraEdit, DistillReport]:
    """Fit a rank-``rank`` LoRA to ``reference`` on ``data`` (from :func:`split_contexts`)."""
    cfg = cfg or DistillConfig()
    check_rank(rank)
    host = EditHost.of(model)
    start = init or initial_edit(model, hook, rank, cfg.layers_back, cfg.seed)
    name = f"__distill_{id(start)}"
    host.add(name, start)
    t0 = time.perf_counter()
    history: list[float] = []
    try:
        params = host.trainable(name)
        opt = torch.optim.Adam(params, lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        half = cfg.batch_size // 2
        fire, quiet = data["fire_train"], data["quiet_train"]
        with torch.enable_grad():
            for _ in range(cfg.steps):
                fi = torch.randint(0, fire.shape[0], (half,), generator=gen)
                qi = torch.randint(0, quiet.shape[0], (cfg.batch_size - half,), generator=gen)
                batch = torch.cat([fire[fi], quiet[qi]]).to(model.device)
                loss = _kl(model, host, name, reference, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                history.append(float(loss.detach()))
        for p in params:
            p.requires_grad_(False)
        seconds = time.perf_counter() - t0
        report = DistillReport(
            steps=cfg.steps,
            seconds=round(seconds, 2),
            n_train={"fire": int(fire.shape[0]), "quiet": int(quiet.shape[0])},
            n_heldout={k: int(data[f"{k}_heldout"].shape[0]) for k in ("fire", "quiet")},
            heldout_kl_hooked_to_edit={
                k: heldout_kl(model, name, reference, data[f"{k}_heldout"]) for k in ("fire", "quiet")
            },
            heldout_kl_hooked_to_base={
                k: heldout_kl(model, None, reference, data[f"{k}_heldout"]) for k in ("fire", "quiet")
            },
            loss_history=[round(h, 6) for h in history],
        )
        edit = host.read_back(name)
    finally:
        host.remove(name)
    edit.info = {
        **(info or {}),
        "distill": {k: v for k, v in report.to_dict().items() if k != "loss_history"},
    }
    return edit, report
