"""The worker's glue around the analysis library: intervention specs, the cached plain run, partial
recomputation from the first intervened layer, and batching of live next-token requests.

No analysis math lives here: every number a view shows comes from ``neuroscope.analysis`` (called by the
worker on the runs built here), so the workbench and the library cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from neuroscope.analysis.run import Run, hook_layer
from neuroscope.errors import IndexOutOfRangeError, NeuroscopeError, ResourceNotFoundError
from neuroscope.interventions import Ablate, Hook, Intervention, Steer
from neuroscope.models.cache import ActivationCache


class PromptLimitError(NeuroscopeError, ValueError):
    def __init__(self, what: str, got: int, limit: int):
        super().__init__(
            f"The prompt is {got} {what} long; this server accepts at most {limit} (see --max-prompt-{what})."
        )


@dataclass(frozen=True)
class SteeringVectorEntry:
    name: str
    layer: int
    vector: Float[torch.Tensor, " d_model"]
    source: str


@dataclass(frozen=True)
class Spec:
    """The worker's view of an intervention request (hashable, validated against the model)."""

    heads: tuple[tuple[int, int], ...] = ()
    neurons: tuple[tuple[int, int], ...] = ()
    mlps: tuple[int, ...] = ()
    steer: tuple[str, int | None, float] | None = None  # (vector name, layer or None, alpha)
    edits: tuple[str, ...] = ()  # prepared feature edits (neuroscope.lab.live), by name

    def is_empty(self) -> bool:
        return not (self.heads or self.neurons or self.mlps or self.steer or self.edits)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Spec:
        d = d or {}
        steer = d.get("steer")
        return cls(
            heads=tuple(sorted({(int(a), int(b)) for a, b in d.get("heads", ())})),
            neurons=tuple(sorted({(int(a), int(b)) for a, b in d.get("neurons", ())})),
            mlps=tuple(sorted({int(x) for x in d.get("mlps", ())})),
            steer=None
            if not steer
            else (str(steer["vector"]), steer.get("layer"), float(steer.get("alpha", 1.0))),
            edits=tuple(sorted({str(e) for e in d.get("edits", ())})),
        )


def build_interventions(
    model: Any, spec: Spec, vectors: dict[str, SteeringVectorEntry]
) -> tuple[list[Intervention], int | None]:
    """Library interventions for ``spec`` and the first layer they touch (None when empty)."""
    ivs: list[Intervention] = []
    layers: list[int] = []
    if spec.heads:
        ivs.append(Ablate(heads=list(spec.heads)))
        layers += [li for li, _ in spec.heads]
    if spec.neurons:
        ivs.append(Ablate(neurons=list(spec.neurons)))
        layers += [li for li, _ in spec.neurons]
    for li in spec.mlps:
        model.check_layer(li)
        ivs.append(Ablate(hook=f"blocks.{li}.hook_mlp_out"))
        layers.append(li)
    if spec.steer:
        name, layer, alpha = spec.steer
        if name not in vectors:
            raise ResourceNotFoundError(
                f"No steering vector named {name!r}; known: {', '.join(sorted(vectors)) or 'none'}."
            )
        entry = vectors[name]
        layer = entry.layer if layer is None else layer
        ivs.append(Steer(layer=layer, vector=entry.vector.to(model.device, model.dtype), alpha=alpha))
        layers.append(layer)
    for iv in ivs:  # validate indices now so a bad request fails before any forward
        iv.bind(model)
    if spec.edits:  # after the ablations and steering, as run_with_edits orders them
        from neuroscope.lab.live import LiveEdits

        live = LiveEdits.of(model)
        edit_ivs = live.interventions(spec.edits)
        for iv in edit_ivs:
            iv.bind(model)
        ivs += edit_ivs
        first = live.first_layer(spec.edits)
        assert first is not None
        layers.append(first)
    return ivs, (min(layers) if layers else None)


def plain_run(model: Any, prompt: str, names: Iterable[str] = ()) -> Run:
    """The un-intervened run of ``prompt`` the worker caches: the residual stream and every attention pattern
    (what the lens, residual and attention views read), plus ``names``; other views extend it on demand."""
    n = model.cfg.n_layers
    wanted = model.resid_stream_names() + [f"blocks.{li}.attn.hook_pattern" for li in range(n)] + list(names)
    return Run.of(model, prompt, names=wanted)


def rerun(model: Any, plain: Run, ivs: list[Intervention], first: int, names: Iterable[str] = ()) -> Run:
    """``plain``'s prompt run again with ``ivs``, recording ``names``, recomputing only layers ``first``.. .

    Layers below ``first`` cannot see the interventions, so their output (``blocks.first.hook_resid_pre``) is
    patched in from the plain run and the layers themselves are skipped; their activations in ``names`` are
    the plain run's. The result is the run a full forward with ``ivs`` would give (tested against one).
    """
    n = model.cfg.n_layers
    wanted = list(dict.fromkeys(model.resolve_hook_name(x) for x in names))
    lower = [x for x in wanted if hook_layer(x, n) < first]
    upper = [x for x in wanted if hook_layer(x, n) >= first]
    plain.ensure(lower)
    patch: list[Intervention] = []
    if first > 0:
        cached = plain.cache[f"blocks.{first}.hook_resid_pre"]
        patch.append(Hook(f"blocks.{first}.hook_resid_pre", lambda x, hook: cached.to(x.dtype)))
    logits, cache = model.run_with_cache(
        plain.ids, names=upper, interventions=patch + list(ivs), skip_below=first, logits_to_keep=1
    )
    assert logits is not None
    store = {x: plain.cache[x] for x in lower} | dict(cache.items())
    return Run(
        model, plain.ids, ActivationCache(store, model), tuple(ivs), logits[0, -1].float(), plain.prompt
    )


def thumbnails(patterns: torch.Tensor, size: int) -> torch.Tensor:
    """[layer, head, q, k] -> [layer, head, size, size] average-pooled for display (identity when small)."""
    li, h, q, k = patterns.shape
    if q <= size:
        return patterns
    flat = patterns.reshape(li * h, 1, q, k)
    return torch.nn.functional.adaptive_avg_pool2d(flat, size).reshape(li, h, size, size)


def check_ids(ids: torch.Tensor, limit: int) -> None:
    if ids.numel() > limit:
        raise PromptLimitError("tokens", int(ids.numel()), limit)
    if ids.numel() == 0:
        raise IndexOutOfRangeError("token", 0, 0)


def rerun_batch(
    model: Any, runs: list[Run], specs: list[Spec], vectors: dict[str, SteeringVectorEntry]
) -> list[torch.Tensor]:
    """Next-token logits of several (prompt, interventions) pairs in one padded forward.

    Each row gets its own interventions through per-row masks at the same hook points ``Ablate``/``Steer``
    use (``attn.hook_z``, ``mlp.hook_post``, ``hook_mlp_out``, ``hook_resid_pre``); all rows start from the
    cached residual stream at the smallest first intervened layer of the batch.
    """
    n, b = model.cfg.n_layers, len(runs)
    firsts = []
    for spec in specs:  # validate exactly as the single-request path does
        _, first = build_interventions(model, spec, vectors)
        assert first is not None
        firsts.append(first)
    first = min(firsts)
    lengths = [r.n_pos for r in runs]
    p = max(lengths)
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.full((b, p), pad, dtype=torch.long, device=model.device)
    mask = torch.zeros((b, p), dtype=torch.long, device=model.device)
    start = torch.zeros((b, p, model.cfg.d_model), dtype=model.dtype, device=model.device)
    for i, r in enumerate(runs):
        ids[i, : lengths[i]] = r.ids[0]
        mask[i, : lengths[i]] = 1
        start[i, : lengths[i]] = r.cache[f"blocks.{first}.hook_resid_pre"][0].to(model.dtype)
    keep: dict[str, torch.Tensor] = {}  # hook -> multiplicative mask broadcast over the batch
    add: dict[str, torch.Tensor] = {}
    for i, spec in enumerate(specs):
        for layer, head in spec.heads:
            m = keep.setdefault(
                f"blocks.{layer}.attn.hook_z", torch.ones(b, 1, model.cfg.n_heads, 1, device=model.device)
            )
            m[i, 0, head, 0] = 0
        for layer, unit in spec.neurons:
            m = keep.setdefault(
                f"blocks.{layer}.mlp.hook_post", torch.ones(b, 1, model.cfg.d_mlp, device=model.device)
            )
            m[i, 0, unit] = 0
        for layer in spec.mlps:
            m = keep.setdefault(f"blocks.{layer}.hook_mlp_out", torch.ones(b, 1, 1, device=model.device))
            m[i] = 0
        if spec.steer:
            name, steer_layer, alpha = spec.steer
            entry = vectors[name]
            at = entry.layer if steer_layer is None else steer_layer
            a = add.setdefault(
                f"blocks.{at}.hook_resid_pre", torch.zeros(b, 1, model.cfg.d_model, device=model.device)
            )
            a[i, 0] += alpha * entry.vector.to(a.device)
    hooks: list[tuple[str, Any]] = []
    if first > 0:
        hooks.append((f"blocks.{first}.hook_resid_pre", lambda x, hook: start))
    # Ablate's hooks come before Steer's in the single-request order; keep that order at shared hook points
    for name, m in keep.items():
        hooks.append((name, lambda x, hook, _m=m: x * _m.to(x.dtype)))
    for name, a in add.items():
        hooks.append((name, lambda x, hook, _a=a: x + _a.to(x.dtype)))
    edit_ivs: list[Intervention] = []
    if any(spec.edits for spec in specs):
        from neuroscope.lab.live import LiveEdits

        edit_ivs, edit_hooks = LiveEdits.of(model).row_interventions([spec.edits for spec in specs])
        hooks += edit_hooks  # after the ablations and steering, as in one request
    last = model.final_resid_name
    _, cache = model.run_with_cache(
        ids,
        names=[last],
        stop_at_layer=n,
        fwd_hooks=hooks,
        interventions=edit_ivs,
        attention_mask=mask,
        skip_below=first,
    )
    final = cache[last]
    rows = final[torch.arange(b), torch.tensor(lengths, device=final.device) - 1]
    logits = model.unembed(model.apply_ln_final(rows)).float()
    return [logits[i] for i in range(b)]
