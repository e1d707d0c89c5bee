"""Edits that are not linear in the weights (``clamp``, gated edits, head edits; ``ablate`` where the closed
form is inexact): a rank-r LoRA fitted by distillation. One trainer serves every family.

The loss is the KL from the hooked reference (the exact intervention) to the LoRA-edited model, over every
position of two kinds of context in equal parts: ``fire`` contexts (where a selected feature fires, or the
triggered prompts), whose target is the hooked edit, and ``quiet`` contexts (where none fires, or the clean
prompts), whose target is ``clean_reference`` (default: the same hooked edit; ``[]`` for the unedited model).
Contexts of unequal length come right-padded with a ``{kind}_mask`` (1 = a real token): causal attention keeps
pads from touching the real positions, and the loss skips them. The LoRA sits on the residual writers of the
last ``layers_back`` layers up to the SAE's hook (or on ``paths``), so backpropagation stops there; held-out KL
is reported next to the KL between the hooked reference and the unedited model (what an edit that did nothing
would score). A run that diverges, gets no closer than doing nothing, or moves clean text beyond
``max_clean_kl`` raises :class:`DistillationFailedError` with those figures instead of returning an adapter.
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
from neuroscope.errors import DistillationFailedError, InvalidConfigError
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
    # the stop: held-out KL on quiet (clean) contexts above this, and above what doing nothing scores there
    max_clean_kl: float | None = 0.1
    require_progress: bool = True  # held-out fire KL must end below doing nothing's

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.layers_back < 1:
            raise InvalidConfigError("steps >= 1, batch_size >= 2 and layers_back >= 1 are required")
        if self.max_clean_kl is not None and not self.max_clean_kl >= 0:
            raise InvalidConfigError(f"max_clean_kl must be >= 0 (or None), got {self.max_clean_kl}")
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
    targets: dict[str, str] = field(default_factory=dict)  # what each kind was fitted to
    max_clean_kl: float | None = None

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


def _mean_kl(target: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    kl = kl_per_token(target, logits)[:, FIRST_EDITABLE_POS:]
    if mask is None:
        return kl.mean()
    m = mask[:, FIRST_EDITABLE_POS:].to(kl.device, kl.dtype)
    return (kl * m).sum() / m.sum().clamp_min(1)


def _kl(
    model: HookedModel,
    host: EditHost,
    name: str,
    refs: Sequence[Sequence[Intervention]],
    parts: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor | None],
) -> torch.Tensor:
    """Mean KL over every real position of ``parts`` (one per kind, each against its own reference)."""
    with torch.no_grad():
        targets = [model(t, interventions=list(r)).float() for t, r in zip(parts, refs, strict=True)]
    with host.use([name]):
        logits = model(torch.cat(list(parts))).float()
    target = torch.cat(targets)
    if all(m is None for m in masks):
        return _mean_kl(target, logits, None)
    mask = torch.cat(
        [torch.ones(t.shape, dtype=torch.long) if m is None else m for t, m in zip(parts, masks, strict=True)]
    )
    return _mean_kl(target, logits, mask)


@torch.no_grad()
def heldout_kl(
    model: HookedModel,
    edit_name: str | None,
    reference: Sequence[Intervention],
    t: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> float:
    host = EditHost.of(model)
    total = count = 0.0
    for i in range(0, t.shape[0], 8):
        b = t[i : i + 8].to(model.device)
        target = model(b, interventions=list(reference)).float()
        with host.use([edit_name] if edit_name else []):
            logits = model(b).float()
        kl = kl_per_token(target, logits)[:, FIRST_EDITABLE_POS:]
        m = torch.ones_like(kl) if mask is None else mask[i : i + 8, FIRST_EDITABLE_POS:].to(kl)
        total += float((kl * m).sum())
        count += float(m.sum())
    return total / max(count, 1.0)


def initial_edit(
    model: HookedModel,
    hook: str,
    rank: int,
    layers_back: int,
    seed: int,
    paths: Sequence[str] | None = None,
) -> LoraEdit:
    """LoRA's usual start (B = 0, small random A) on ``paths`` (default: the writers of the last
    ``layers_back`` layers up to ``hook``)."""
    if paths is None:
        L, _ = parse_hook(model, hook)
        paths = writer_paths(model, hook, layers=range(max(0, L - layers_back + 1), L + 1))
    paths = list(paths)
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
    clean_reference: Sequence[Intervention] | None = None,
    paths: Sequence[str] | None = None,
) -> tuple[LoraEdit, DistillReport]:
    """Fit a rank-``rank`` LoRA to ``reference`` on ``data`` (from :func:`split_contexts` or
    :func:`neuroscope.edits.prompts.prompt_data`); ``clean_reference`` is the quiet kind's target (``[]``:
    the unedited model). Raises :class:`DistillationFailedError` (figures attached) instead of returning a
    LoRA that diverged, got no closer than doing nothing, or broke clean text."""
    cfg = cfg or DistillConfig()
    check_rank(rank)
    host = EditHost.of(model)
    quiet_ref = list(reference) if clean_reference is None else list(clean_reference)
    refs = {"fire": list(reference), "quiet": quiet_ref}
    start = init or initial_edit(model, hook, rank, cfg.layers_back, cfg.seed, paths)
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
        fmask, qmask = data.get("fire_train_mask"), data.get("quiet_train_mask")
        with torch.enable_grad():
            for step in range(cfg.steps):
                fi = torch.randint(0, fire.shape[0], (half,), generator=gen)
                qi = torch.randint(0, quiet.shape[0], (cfg.batch_size - half,), generator=gen)
                parts = [fire[fi].to(model.device), quiet[qi].to(model.device)]
                masks = [None if fmask is None else fmask[fi], None if qmask is None else qmask[qi]]
                loss = _kl(model, host, name, [refs["fire"], refs["quiet"]], parts, masks)
                if not torch.isfinite(loss):
                    raise DistillationFailedError(
                        f"distillation diverged at step {step + 1} of {cfg.steps} (loss {float(loss)}): lower "
                        f"--lr (now {cfg.lr}) or the rank",
                        {"step": step + 1, "loss": float(loss), "lr": cfg.lr, "loss_history": history},
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                history.append(float(loss.detach()))
        for p in params:
            p.requires_grad_(False)
        seconds = time.perf_counter() - t0

        def held(edit_name: str | None, kind: str) -> float:
            return heldout_kl(
                model, edit_name, refs[kind], data[f"{kind}_heldout"], data.get(f"{kind}_heldout_mask")
            )

        report = DistillReport(
            steps=cfg.steps,
            seconds=round(seconds, 2),
            n_train={"fire": int(fire.shape[0]), "quiet": int(quiet.shape[0])},
            n_heldout={k: int(data[f"{k}_heldout"].shape[0]) for k in ("fire", "quiet")},
            heldout_kl_hooked_to_edit={k: held(name, k) for k in ("fire", "quiet")},
            heldout_kl_hooked_to_base={k: held(None, k) for k in ("fire", "quiet")},
            loss_history=[round(h, 6) for h in history],
            targets={
                "fire": "the hooked edit",
                "quiet": "the unedited model" if not quiet_ref else "the hooked edit",
            },
            max_clean_kl=cfg.max_clean_kl,
        )
        check_report(report, cfg)
        edit = host.read_back(name)
    finally:
        host.remove(name)
    edit.info = {
        **(info or {}),
        "distill": {k: v for k, v in report.to_dict().items() if k != "loss_history"},
    }
    return edit, report


def check_report(report: DistillReport, cfg: DistillConfig) -> None:
    """The stop: raise with the figures when the fit is no better than nothing or breaks clean text."""
    got, nothing = report.heldout_kl_hooked_to_edit, report.heldout_kl_hooked_to_base
    figures = {k: v for k, v in report.to_dict().items() if k != "loss_history"}
    figures["final_train_kl"] = report.loss_history[-1] if report.loss_history else None
    if not all(math.isfinite(v) for v in (*got.values(), *nothing.values())):
        raise DistillationFailedError(f"distillation diverged: held-out KL {got}", figures)
    if cfg.require_progress and nothing["fire"] > 0 and got["fire"] >= nothing["fire"]:
        raise DistillationFailedError(
            f"the distilled LoRA is no closer to the hooked edit than doing nothing on held-out "
            f"{report.targets.get('fire', 'fire')} contexts: KL {got['fire']:.4g} vs {nothing['fire']:.4g} "
            f"nats; train longer (--steps), raise --lr or --rank, or give more triggered prompts",
            figures,
        )
    budget = cfg.max_clean_kl
    if budget is not None and got["quiet"] > budget and got["quiet"] > nothing["quiet"]:
        raise DistillationFailedError(
            f"the distilled LoRA moves held-out clean contexts by KL {got['quiet']:.4g} nats, over the "
            f"budget {budget:.4g} (doing nothing: {nothing['quiet']:.4g}); give more clean prompts or lower "
            f"--lr",
            figures,
        )
