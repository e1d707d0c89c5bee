"""Activation patching (batched sweeps), path patching and attribution patching between a clean and a corrupted prompt.

Direction: clean activations are patched into the corrupted run ("denoising"). The metric is the logit
difference ``answer − wrong`` at the last position, normalised so 0 = the corrupted run and 1 = the clean run.

A sweep puts one patch per batch row. A row joins its forward at its patched layer, from the corrupted
residual there, and computes only the positions from its forward's first patched position on, the corrupted
run's keys and values standing in for the earlier ones (``analysis._sweep``): in a causal model a patch at
layer l, position p changes nothing below l or before p. That is how the library computes activation
patching; ``patch_one`` (one forward through ``interventions.Patch``) is the independent check.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from neuroscope.analysis import _sweep, figures
from neuroscope.analysis._sweep import hook_for
from neuroscope.analysis._util import token_id, tolist
from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, ShapeMismatchError
from neuroscope.interventions import Patch
from neuroscope.models.prefix import record_prefix
from neuroscope.models.quantize import require_gradients
from neuroscope.models.rowgrad import no_grad_rows

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

Site = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "z_pos"]
SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "z_pos")


@dataclass
class PatchingSetup:
    """Tokens, answer ids and the two reference logit differences of a clean/corrupted pair."""

    clean: torch.Tensor  # [1, pos]
    corrupted: torch.Tensor  # [1, pos]
    answer: int
    wrong: int
    clean_ld: float
    corrupted_ld: float
    str_tokens: list[str]

    def normalise(self, ld: torch.Tensor | float) -> Any:
        return (ld - self.corrupted_ld) / (self.clean_ld - self.corrupted_ld)

    def ld(self, logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1].float()
        return last[:, self.answer] - last[:, self.wrong]

    def final_ld(self, model: HookedModel, resid: torch.Tensor) -> torch.Tensor:
        """The logit difference from the last block's output at the last position (``[batch, d_model]``),
        unembedding only the two tokens it reads."""
        logits = model.unembed(model.apply_ln_final(resid), tokens=(self.answer, self.wrong)).float()
        return logits[:, 0] - logits[:, 1]


def prepare(
    model: HookedModel, clean: str, corrupted: str, answer: str | int, wrong: str | int
) -> PatchingSetup:
    c, k = model.to_tokens(clean), model.to_tokens(corrupted)
    if c.shape != k.shape:
        raise ShapeMismatchError(
            "corrupted prompt tokens (must match the clean prompt's length)", tuple(c.shape), tuple(k.shape)
        )
    a, w = token_id(model, answer), token_id(model, wrong)
    with torch.no_grad():
        lc, lk = model(torch.cat([c, k]))
    setup = PatchingSetup(c, k, a, w, 0.0, 0.0, model.to_str_tokens(clean))
    setup.clean_ld = float(setup.ld(lc[None]))
    setup.corrupted_ld = float(setup.ld(lk[None]))
    if abs(setup.clean_ld - setup.corrupted_ld) < 1e-6:
        raise InvalidConfigError(
            "clean and corrupted prompts give the same logit difference: nothing to patch"
        )
    return setup


@dataclass
class PatchingResult:
    site: str
    values: list  # normalised metric: [layer][pos] | [layer][head] | [layer][head][pos]
    logit_diffs: list
    rows: list[str]
    cols: list[str]
    clean_ld: float
    corrupted_ld: float
    seconds: float
    method: str  # "batched" | "loop" | "attribution"
    n_forwards: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)

    def figure(self):
        arr = self.array()
        if arr.ndim == 3:  # per head per position: show the max over positions
            arr = arr.max(-1)
        return figures.heatmap(
            arr,
            x=self.cols,
            y=self.rows,
            title=f"{self.method} patching of {self.site} (1 = clean restored)",
            xlabel="position" if self.site not in ("z",) else "head",
            ylabel="layer",
        )


def _units(model: HookedModel, site: str, n_pos: int, layers: Sequence[int] | None) -> list[tuple[int, ...]]:
    L = range(model.cfg.n_layers) if layers is None else layers
    if site == "z":
        return [(l, h) for l in L for h in range(model.cfg.n_heads)]
    if site == "z_pos":
        return [(l, h, p) for l in L for h in range(model.cfg.n_heads) for p in range(n_pos)]
    return [(l, p) for l in L for p in range(n_pos)]


def _check_site(model: HookedModel, site: str) -> None:
    if site not in SITES:
        raise InvalidConfigError(f"site must be one of {SITES}, got {site!r}")
    if site == "resid_mid" and model.cfg.parallel_attn_mlp:
        raise InvalidConfigError("this model has parallel attention/MLP: there is no resid_mid")


def _shape(model: HookedModel, site: str, n_pos: int) -> tuple[int, ...]:
    if site == "z":
        return (model.cfg.n_layers, model.cfg.n_heads)
    if site == "z_pos":
        return (model.cfg.n_layers, model.cfg.n_heads, n_pos)
    return (model.cfg.n_layers, n_pos)


def _result(model, setup, site, lds: torch.Tensor, units, layers, seconds, method, n_fwd) -> PatchingResult:
    n_pos = setup.clean.shape[1]
    full = torch.full(_shape(model, site, n_pos), float("nan"))
    for u, v in zip(units, lds, strict=False):
        full[u] = v
    cols = [str(h) for h in range(model.cfg.n_heads)] if site == "z" else setup.str_tokens
    return PatchingResult(
        site,
        tolist(setup.normalise(full)),
        tolist(full),
        [str(l) for l in range(model.cfg.n_layers)],
        cols,
        setup.clean_ld,
        setup.corrupted_ld,
        seconds,
        method,
        n_fwd,
    )


def patch_sweep(
    model: HookedModel,
    setup: PatchingSetup,
    site: Site = "resid_pre",
    layers: Sequence[int] | None = None,
    batch_size: int = 64,
    prefix: bool = True,
) -> PatchingResult:
    """Patch every (layer, position | head) of ``site`` one at a time, many patches per batched forward.

    Each patch is computed from its own layer on and, with ``prefix`` (where the model's cache allows it,
    ``models.prefix.supports_prefix``), from its forward's first patched position on, the corrupted run's
    keys and values standing in for the positions before (``analysis._sweep``). A forward holds at most
    ``batch_size`` × prompt-length positions. The values are the same either way.
    """
    _check_site(model, site)
    if batch_size < 1:
        raise InvalidConfigError(f"batch_size must be at least 1, got {batch_size}")
    t0 = time.perf_counter()
    n_pos = setup.clean.shape[1]
    units = sorted(_units(model, site, n_pos, layers))
    used = sorted({u[0] for u in units})
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(setup.clean, names=[hook_for(site, l) for l in used])
        _, corr_cache = model.run_with_cache(
            setup.corrupted, names=[f"blocks.{l}.hook_resid_pre" for l in used]
        )
    kv = record_prefix(model, setup.corrupted) if prefix and site != "z" else None
    chunks = _sweep.plan(site, units, model.cfg.n_layers, n_pos, batch_size * n_pos, kv is not None)
    lds: dict[tuple[int, ...], torch.Tensor] = {}
    for chunk in chunks:
        out = _sweep.run_chunk(model, setup, site, chunk, clean_cache, corr_cache, kv)
        lds.update(zip(chunk.rows, out.cpu(), strict=True))
    n_fwd = 2 + (kv is not None) + len(chunks)
    seconds = time.perf_counter() - t0
    return _result(
        model, setup, site, torch.stack([lds[u] for u in units]), units, layers, seconds, "batched", n_fwd
    )


def _ld_run(
    model: HookedModel,
    setup: PatchingSetup,
    ids: torch.Tensor,
    hooks: list,
    skip_below: int = 0,
    interventions: Sequence[Any] = (),
) -> torch.Tensor:
    """The logit difference of a hooked forward that skips layers below ``skip_below`` and stops before the
    unembedding, which it then applies to the last position and the two metric tokens only."""
    last = model.final_resid_name
    with torch.no_grad():
        _, cache = model.run_with_cache(
            ids,
            names=[last],
            fwd_hooks=hooks,
            interventions=interventions,
            skip_below=skip_below,
            stop_at_layer=model.cfg.n_layers,
        )
        return setup.final_ld(model, cache[last][:, -1])


def patch_one(
    model: HookedModel,
    setup: PatchingSetup,
    site: Site,
    unit: tuple[int, ...],
    source: Any,
    lean: bool = False,
) -> float:
    """Run the corrupted prompt with a single ``interventions.Patch`` from ``source`` (a clean cache): the logit
    diff. ``lean`` stops before the unembedding and applies it to the metric's two tokens only (same value)."""
    layer = unit[0]
    if site == "z":
        iv = Patch(hook_for(site, layer), source, heads=[unit[1]])
    elif site == "z_pos":
        iv = Patch(hook_for(site, layer), source, heads=[unit[1]], positions=[unit[2]])
    else:
        iv = Patch(hook_for(site, layer), source, positions=[unit[1]])
    if lean:
        return float(_ld_run(model, setup, setup.corrupted, [], interventions=[iv]))
    with torch.no_grad():
        return float(setup.ld(model(setup.corrupted, interventions=[iv])))


def attribution_patching(model: HookedModel, setup: PatchingSetup, site: Site = "z") -> PatchingResult:
    """First-order estimate of every patch at once: (clean − corrupted activation) · ∂metric/∂activation.

    Two forwards (clean, corrupted with gradients) and one backward, whatever the number of patches. The two
    forwards run as one batch whose clean row skips autograd (``models.rowgrad``), so they share each weight
    read; the metric unembeds only its two tokens at the last position.
    """
    _check_site(model, site)
    require_gradients(model, "attribution patching")
    t0 = time.perf_counter()
    n = model.cfg.n_layers
    names = [hook_for(site, l) for l in range(n)]
    last = model.final_resid_name
    # a zero tensor added at each site: its gradient is the metric's gradient there, and the graph stays whole
    probes: dict[str, torch.Tensor] = {}

    def add_probe(x: torch.Tensor, hook: Any) -> torch.Tensor:
        probes[hook.name] = torch.zeros_like(x, requires_grad=True)
        return x + probes[hook.name]

    pair = torch.cat([setup.clean, setup.corrupted])  # row 0 clean, row 1 corrupted
    with torch.enable_grad(), no_grad_rows(model, 1):
        _, cache = model.run_with_cache(
            pair,
            names=sorted({*names, last}),
            fwd_hooks=[(nm, add_probe) for nm in names],
            stop_at_layer=n,
            detach=False,
        )
        metric = setup.final_ld(model, cache[last][1:, -1]).sum()
        grads = torch.autograd.grad(metric, [probes[nm] for nm in names])
    vals = []
    for nm, g in zip(names, grads, strict=True):
        act = cache[nm].detach()
        delta = (act[0] - act[1]).float() * g[1].float()
        if site == "z":
            vals.append(delta.sum((0, 2)))  # [head]
        elif site == "z_pos":
            vals.append(delta.sum(-1).T)  # [head, pos]
        else:
            vals.append(delta.sum(-1))  # [pos]
    est = torch.stack(vals).cpu()  # estimated change of the logit diff
    lds = est + setup.corrupted_ld
    cols = [str(h) for h in range(model.cfg.n_heads)] if site == "z" else setup.str_tokens
    return PatchingResult(
        site,
        tolist(setup.normalise(lds)),
        tolist(lds),
        [str(l) for l in range(n)],
        cols,
        setup.clean_ld,
        setup.corrupted_ld,
        time.perf_counter() - t0,
        "attribution",
        2,
    )


@dataclass
class PathPatchingResult:
    senders: list[list[tuple[int, int]]]  # one sender set per row
    receivers: list[tuple[int, int, str]] | None  # None: the logits
    values: list[float]  # normalised metric per sender set
    logit_diffs: list[float]
    clean_ld: float
    corrupted_ld: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def head_map(self, n_layers: int, n_heads: int) -> np.ndarray:
        arr = np.full((n_layers, n_heads), np.nan)
        for s, v in zip(self.senders, self.values, strict=False):
            if len(s) == 1:
                arr[s[0]] = v
        return arr

    def figure(self, n_layers: int | None = None, n_heads: int | None = None):
        if n_layers and n_heads and all(len(s) == 1 for s in self.senders):
            return figures.heatmap(
                self.head_map(n_layers, n_heads),
                title="path patching: sender head → receivers",
                xlabel="head",
                ylabel="layer",
            )
        return figures.bars(
            [str(s) for s in self.senders], self.values, title="path patching (1 = clean restored)"
        )


def path_patching(
    model: HookedModel,
    setup: PatchingSetup,
    senders: Sequence[Sequence[tuple[int, int]]],
    receivers: Sequence[tuple[int, int, str]] | None = None,
    batch_size: int = 32,
) -> PathPatchingResult:
    """Effect of sender heads (clean outputs) reaching only the receivers, every other head frozen to corrupted.

    ``senders``: sender sets, one per result row (e.g. ``[[(l, h)] for every head]`` for a map).
    ``receivers``: ``(layer, head, "q"|"k"|"v")`` inputs (``head`` is a KV head for k/v), or None for the logits
    (then the path runs through the MLPs, which recompute, into the unembedding).
    Step 1 runs the corrupted prompt with senders clean and all other heads frozen and records the receiver
    inputs; step 2 runs the corrupted prompt with only those receiver inputs patched in.
    """
    n = model.cfg.n_layers
    for s in senders:
        for l, h in s:
            model.check_head(l, h)
    for r in receivers or ():
        if r[2] not in ("q", "k", "v"):
            raise InvalidConfigError(f"receiver input must be 'q', 'k' or 'v', got {r[2]!r}")
        n_units = model.cfg.n_heads if r[2] == "q" else model.cfg.n_kv_heads
        model.check_layer(r[0])
        if not 0 <= r[1] < n_units:
            raise IndexOutOfRangeError(f"receiver {r[2]} head", r[1], n_units)
    z_names = [f"blocks.{l}.attn.hook_z" for l in range(n)]
    with torch.no_grad():
        _, cc = model.run_with_cache(setup.clean, names=z_names)
        _, kc = model.run_with_cache(setup.corrupted, names=z_names)
    mask = torch.zeros(len(senders), n, model.cfg.n_heads, dtype=torch.bool)
    for i, s in enumerate(senders):
        for l, h in s:
            mask[i, l, h] = True
    recv_names = sorted({f"blocks.{l}.attn.hook_{kind}" for l, _, kind in receivers or ()})
    lds = []
    for i in range(0, len(senders), batch_size):
        m = mask[i : i + batch_size]
        b = m.shape[0]
        hooks = []
        for l in range(n):
            # freeze heads (senders clean, the rest corrupted); receivers' own layers included, as in Wang et al.
            def fn(x, hook, _l=l, _m=m):
                return torch.where(_m[:, _l][:, None, :, None].to(x.device), cc["z", _l], kc["z", _l]).to(
                    x.dtype
                )

            hooks.append((z_names[l], fn))
        ids = setup.corrupted.expand(b, -1)
        if receivers is None:
            lds.append(_ld_run(model, setup, ids, hooks))
            continue
        with torch.no_grad():
            # step 1 needs nothing above the last receiver's layer
            stop = max((r[0] for r in receivers), default=-1) + 1
            _, step1 = model.run_with_cache(ids, names=recv_names, fwd_hooks=hooks, stop_at_layer=stop)
        ivs = [Patch(f"blocks.{l}.attn.hook_{kind}", step1, heads=[h]) for l, h, kind in receivers]
        lds.append(_ld_run(model, setup, ids, [], interventions=ivs))
    ld = torch.cat(lds).cpu()
    return PathPatchingResult(
        [[(int(l), int(h)) for l, h in s] for s in senders],
        None if receivers is None else [(int(r[0]), int(r[1]), str(r[2])) for r in receivers],
        tolist(setup.normalise(ld)),
        tolist(ld),
        setup.clean_ld,
        setup.corrupted_ld,
    )
