"""The engine of batched patching sweeps: which patches share a forward, and how each forward is cut short.

A patch at layer ``l`` and position ``p`` (of a per-position site) leaves two things as in the corrupted run:
every layer below ``l``, and, the model being causal, every position before ``p`` at every layer. So a row
(one patch) of a batched forward

- joins the batch at layer ``l``'s input, from the corrupted residual there (``HookState.grow``): rows that
  patch different layers share one forward, and none computes the layers below its own;
- computes positions ``≥ start`` only, the corrupted run's keys and values standing in for the positions
  before (``models.prefix``), where ``start`` is the forward's smallest patched position.

Rows are grouped by position into segments (a segment's forward starts at its first position), and a segment
is cut into forwards of at most ``budget`` positions. The segments are chosen to minimise a cost model that
counts positions through layers and a fixed cost per layer call (:data:`LAYER_CALL_POSITIONS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from neuroscope.analysis.patching import PatchingSetup
    from neuroscope.models.hooked import HookedModel
    from neuroscope.models.prefix import KVPrefix

# A layer call costs about as much as this many more positions through the layer: each call reads the
# layer's weights once, whatever the batch (measured on smollm2-135m on a 2-core CPU: 20 to 55)
LAYER_CALL_POSITIONS = 32
MAX_SEGMENT = 16  # positions per segment the planner considers (bounds its work on long prompts)


def hook_for(site: str, layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z" if site in ("z", "z_pos") else f"blocks.{layer}.hook_{site}"


def position_of(site: str, unit: tuple[int, ...]) -> int | None:
    """The position a patch writes (None: every position, ``z``)."""
    return None if site == "z" else unit[2] if site == "z_pos" else unit[1]


@dataclass(frozen=True)
class Chunk:
    """One forward: its rows (patches, sorted by layer) and the first position it computes."""

    rows: tuple[tuple[int, ...], ...]
    start: int


def plan(
    site: str, units: Sequence[tuple[int, ...]], n_layers: int, n_pos: int, budget: int, reuse: bool
) -> list[Chunk]:
    """Group ``units`` into forwards of at most ``budget`` positions (rows × computed positions).

    Without ``reuse`` (no usable key/value prefix) every forward computes every position.
    """
    by_pos: dict[int, list[tuple[int, ...]]] = {}
    for u in units:
        p = position_of(site, u)
        by_pos.setdefault(p if reuse and p is not None else 0, []).append(u)
    positions = sorted(by_pos)
    counts = np.zeros((len(positions), n_layers), dtype=np.int64)
    for i, p in enumerate(positions):
        for u in by_pos[p]:
            counts[i, u[0]] += 1
    depth = n_layers - np.arange(n_layers)

    def cost(i: int, j: int) -> float:  # positions[i:j] as one segment
        cnt = counts[i:j].sum(0)
        width = n_pos - positions[i]
        cap = max(1, budget // width)
        cum = np.cumsum(cnt)
        lows = np.searchsorted(cum, np.arange(0, cum[-1], cap), side="right")
        return float(width * (cnt * depth).sum() + LAYER_CALL_POSITIONS * depth[lows].sum())

    # best[i]: the cheapest split of positions[i:] into segments (a shortest path over cut points)
    k = len(positions)
    best, cut = [0.0] * (k + 1), [k] * (k + 1)
    for i in range(k - 1, -1, -1):
        best[i] = float("inf")
        for j in range(i + 1, min(k, i + MAX_SEGMENT) + 1):
            c = cost(i, j) + best[j]
            if c < best[i]:
                best[i], cut[i] = c, j
    chunks: list[Chunk] = []
    i = 0
    while i < k:
        j = cut[i]
        rows = sorted(u for p in positions[i:j] for u in by_pos[p])
        cap = max(1, budget // (n_pos - positions[i]))
        chunks += [Chunk(tuple(rows[s : s + cap]), positions[i]) for s in range(0, len(rows), cap)]
        i = j
    return chunks


def run_chunk(
    model: HookedModel,
    setup: PatchingSetup,
    site: str,
    chunk: Chunk,
    clean: Any,
    corrupted: Any,
    prefix: KVPrefix | None,
) -> torch.Tensor:
    """The logit difference of every row of ``chunk``: one forward from its first layer and position.

    ``clean``: the clean run's activations at the patched sites; ``corrupted``: the corrupted run's
    ``resid_pre`` at every patched layer; ``prefix``: the corrupted run's keys and values (None: compute
    every position, ``chunk.start`` is then 0).
    """
    s = chunk.start
    grow: dict[int, torch.Tensor] = {}
    hooks = []
    layers: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
    for r, u in enumerate(chunk.rows):
        layers.setdefault(u[0], []).append((r, u[1:]))
    for layer, rows in layers.items():
        base = corrupted["resid_pre", layer][0, s:]
        x = base.expand(len(rows), *base.shape).clone()
        src = clean[hook_for(site, layer)][0, s:]
        if site == "resid_pre":  # written into the rows as they join: no hook needed
            x[torch.arange(len(rows)), [u[0] - s for _, u in rows]] = src[[u[0] - s for _, u in rows]]
        else:
            # rows are numbered within the chunk, as in the batch the hook sees at this layer
            hooks.append((hook_for(site, layer), _row_patch(site, rows, src, s)))
        grow[layer] = x
    last = model.final_resid_name
    with torch.no_grad():
        _, cache = model.run_with_cache(
            setup.corrupted,
            names=[last],
            fwd_hooks=hooks,
            skip_below=chunk.rows[0][0],
            stop_at_layer=model.cfg.n_layers,
            prefix=prefix.upto(s) if prefix is not None and s else None,
            grow=grow,
        )
        return setup.final_ld(model, cache[last][:, -1])


def _row_patch(site: str, rows: list[tuple[int, tuple[int, ...]]], src: torch.Tensor, start: int):
    """A hook writing, in each row ``r``, the clean activation at that row's (position | head); positions
    count from ``start``, the forward's first position, as do ``src``'s."""
    r_idx = torch.tensor([r for r, _ in rows])
    if site == "z":
        heads = torch.tensor([u[0] for _, u in rows])
    elif site == "z_pos":
        heads = torch.tensor([u[0] for _, u in rows])
        pos = torch.tensor([u[1] - start for _, u in rows])
    else:
        pos = torch.tensor([u[0] - start for _, u in rows])

    def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        if site == "z":
            x[r_idx, :, heads] = src[:, heads].transpose(0, 1)
        elif site == "z_pos":
            x[r_idx, pos, heads] = src[pos, heads]
        else:
            x[r_idx, pos] = src[pos]
        return x

    return fn
