"""Thin computations over a HookedModel for the workbench views (plain Python / tensors, no HTTP).

Where the analysis library (``neuroscope.analysis``) has the same computation, it replaces these; they are
kept to the few lines each view needs, on tensors the worker already cached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, NeuroscopeError, ResourceNotFoundError
from neuroscope.interventions import Ablate, Hook, Intervention, Steer


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
    edits: tuple[str, ...] = ()  # prepared edits (neuroscope.lab.live), by name

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
    if spec.edits:
        from neuroscope.lab.live import LiveEdits

        live = LiveEdits.of(model)
        ivs += live.hooked(spec.edits)  # hooked edits after the ablations, as run_with_edits orders them
        first = live.first_layer(spec.edits)
        assert first is not None
        layers.append(first)
    return ivs, (min(layers) if layers else None)


def edit_context(model: Any, spec: Spec) -> Any:
    """The LoRA edits of ``spec`` active for the forwards inside (a no-op without edits)."""
    if not spec.edits:
        return contextlib.nullcontext()
    from neuroscope.lab.live import LiveEdits

    return LiveEdits.of(model).use(spec.edits)


@dataclass
class PlainRun:
    """Everything the views need from the un-intervened forward of one prompt."""

    prompt: str
    ids: torch.Tensor  # [pos]
    tokens: list[str]
    resid: Float[
        torch.Tensor, "row pos d_model"
    ]  # row li = blocks.l.hook_resid_pre; last row = final resid_post
    logits: Float[torch.Tensor, " d_vocab"]  # next-token logits (last position)
    attn_out: Float[torch.Tensor, "layer d_model"]  # last position
    mlp_out: Float[torch.Tensor, "layer d_model"]
    z: Float[torch.Tensor, "layer head d_head"]
    post: Float[torch.Tensor, "layer d_mlp"]  # MLP neuron activations, last position
    patterns: Float[torch.Tensor, "layer head q k"] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        ts = [self.resid, self.logits, self.attn_out, self.mlp_out, self.z, self.post]
        if self.patterns is not None:
            ts.append(self.patterns)
        return sum(t.numel() * t.element_size() for t in ts)


def _last_names(n_layers: int) -> list[str]:
    return [
        f"blocks.{li}.{s}"
        for li in range(n_layers)
        for s in ("hook_attn_out", "hook_mlp_out", "attn.hook_z", "mlp.hook_post")
    ]


def plain_run(model: Any, prompt: str, ids: torch.Tensor) -> PlainRun:
    n = model.cfg.n_layers
    names = model.resid_stream_names()
    names += [f"blocks.{li}.attn.hook_pattern" for li in range(n)] + _last_names(n)
    logits, cache = model.run_with_cache(ids[None], names=names)
    resid = torch.stack([cache[nm][0] for nm in names[: n + 1]]).float()
    patterns = torch.stack([cache[f"blocks.{li}.attn.hook_pattern"][0] for li in range(n)]).float()
    return PlainRun(
        prompt=prompt,
        ids=ids,
        tokens=[model.tokenizer.decode([int(i)]) for i in ids],
        resid=resid,
        logits=logits[0, -1].float(),
        attn_out=torch.stack([cache[f"blocks.{li}.hook_attn_out"][0, -1] for li in range(n)]).float(),
        mlp_out=torch.stack([cache[f"blocks.{li}.hook_mlp_out"][0, -1] for li in range(n)]).float(),
        z=torch.stack([cache[f"blocks.{li}.attn.hook_z"][0, -1] for li in range(n)]).float(),
        post=torch.stack([cache[f"blocks.{li}.mlp.hook_post"][0, -1] for li in range(n)]).float(),
        patterns=patterns,
    )


@dataclass
class Rerun:
    logits: Float[torch.Tensor, " d_vocab"]
    resid: Float[torch.Tensor, "row pos d_model"] | None
    attn_out: torch.Tensor | None = None
    mlp_out: torch.Tensor | None = None
    z: torch.Tensor | None = None
    post: torch.Tensor | None = None
    recomputed_layers: int = 0


def rerun(model: Any, run: PlainRun, ivs: list[Intervention], first: int, full: bool = False) -> Rerun:
    """Re-run ``run``'s prompt with ``ivs``, starting from the cached residual stream at layer ``first``.

    Layers below ``first`` cannot see the interventions, so their output (``blocks.first.hook_resid_pre``)
    is patched in from the cache and the layers themselves are skipped; the final norm and unembedding are
    applied to the last position only.
    """
    n = model.cfg.n_layers
    names = [model.final_resid_name]
    if full:
        names += [f"blocks.{li}.hook_resid_pre" for li in range(first, n)]
        names += [nm for nm in _last_names(n) if int(nm.split(".")[1]) >= first]
    cached = run.resid[first][None]
    patch = [Hook(f"blocks.{first}.hook_resid_pre", lambda x, hook: cached.to(x.dtype))] if first > 0 else []
    _, cache = model.run_with_cache(
        run.ids[None], names=names, stop_at_layer=n, interventions=patch + list(ivs), skip_below=first
    )
    final = cache[names[0]][0]
    logits = model.unembed(model.apply_ln_final(final[-1:]))[0].float()
    out = Rerun(logits=logits, resid=None, recomputed_layers=n - first)
    if full:
        rows = [run.resid[li] for li in range(first)] + [
            cache[f"blocks.{li}.hook_resid_pre"][0].float() for li in range(first, n)
        ]
        out.resid = torch.stack(rows + [final.float()])

        def merge(plain: torch.Tensor, hook: str) -> torch.Tensor:
            new = [cache[f"blocks.{li}.{hook}"][0, -1].float() for li in range(first, n)]
            return torch.cat([plain[:first], torch.stack(new)]) if new else plain

        out.attn_out, out.mlp_out, out.z, out.post = (
            merge(run.attn_out, "hook_attn_out"),
            merge(run.mlp_out, "hook_mlp_out"),
            merge(run.z, "attn.hook_z"),
            merge(run.post, "mlp.hook_post"),
        )
    return out


def top_tokens(model: Any, logits: torch.Tensor, k: int) -> list[dict[str, Any]]:
    probs = torch.softmax(logits.float(), -1)
    vals, idx = probs.topk(min(k, probs.shape[-1]))
    return [
        {
            "token_id": int(i),
            "token": model.tokenizer.decode([int(i)]),
            "logit": float(logits[i]),
            "prob": float(v),
        }
        for v, i in zip(vals, idx, strict=False)
    ]


def compare(model: Any, base: torch.Tensor, new: torch.Tensor, k: int) -> dict[str, Any]:
    """Top-k of ``new`` with deltas against ``base``, the baseline top-k, and KL(base || new)."""
    pb, pn = torch.log_softmax(base.float(), -1), torch.log_softmax(new.float(), -1)
    top = []
    for t in top_tokens(model, new, k):
        i = t["token_id"]
        bl, bp = float(base[i]), float(pb[i].exp())
        top.append(
            {
                **t,
                "base_logit": bl,
                "base_prob": bp,
                "delta_logit": t["logit"] - bl,
                "delta_prob": t["prob"] - bp,
            }
        )
    kl = float((pb.exp() * (pb - pn)).sum().clamp_min(0.0))
    return {"top": top, "baseline": top_tokens(model, base, k), "kl": kl}


def logit_lens(
    model: Any, resid: Float[torch.Tensor, "row pos d_model"]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 token id and probability of every (row, position) decoded through the final norm + unembed."""
    ids, probs = [], []
    w = model.W_U
    for row in resid:  # one row at a time keeps the [pos, d_vocab] temporaries small
        normed = model.apply_ln_final(row.to(w.dtype))
        p = torch.softmax(model.unembed(normed).float(), -1)
        v, i = p.max(-1)
        ids.append(i)
        probs.append(v)
    return torch.stack(ids), torch.stack(probs)


def pca_basis(points: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    mean = points.mean(0)
    centered = points - mean
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    var = s.pow(2)
    explained = (var / var.sum().clamp_min(1e-12))[:k].tolist()
    basis = vh[:k]
    if basis.shape[0] < k:  # fewer rows than components: pad with zero directions
        basis = torch.cat([basis, torch.zeros(k - basis.shape[0], basis.shape[1])])
        explained += [0.0] * (k - len(explained))
    return mean, basis, explained


def thumbnails(patterns: torch.Tensor, size: int) -> torch.Tensor:
    """[layer, head, q, k] -> [layer, head, size, size] average-pooled (identity when already small)."""
    li, h, q, k = patterns.shape
    if q <= size:
        return patterns
    flat = patterns.reshape(li * h, 1, q, k)
    return torch.nn.functional.adaptive_avg_pool2d(flat, size).reshape(li, h, size, size)


def head_badges(patterns: torch.Tensor, threshold: float = 0.4) -> list[dict[str, Any]]:
    """Simple per-prompt head types from the pattern: the dominant of previous-token, first-token, self."""
    _, _, q, _ = patterns.shape
    if q < 3:
        return []
    qs = torch.arange(1, q)
    scores = {
        "previous-token": patterns[:, :, qs, qs - 1].mean(-1),
        "first-token": patterns[:, :, qs, 0].mean(-1),
        "self": patterns[:, :, qs, qs].mean(-1),
    }
    ent = -(patterns[:, :, 1:].clamp_min(1e-9).log() * patterns[:, :, 1:]).sum(-1).mean(-1)
    uniform = torch.log(qs.float() + 1).mean()
    scores["broad"] = ent / uniform
    stacked = torch.stack(list(scores.values()))  # [kind, layer, head]
    best, kind = stacked.max(0)
    names = list(scores)
    out = []
    for li in range(best.shape[0]):
        for h in range(best.shape[1]):
            kname = names[int(kind[li, h])]
            thr = 0.85 if kname == "broad" else threshold
            if float(best[li, h]) >= thr:
                out.append({"layer": li, "head": h, "kind": kname, "score": float(best[li, h])})
    return out


def resolve_target(model: Any, target: str | None, logits: torch.Tensor) -> int:
    if target is None:
        return int(logits.argmax())
    ids = model.tokenizer.encode(target, add_special_tokens=False)
    if len(ids) != 1:
        raise InvalidConfigError(
            f"The target {target!r} is {len(ids)} tokens; give text that is exactly one token."
        )
    return int(ids[0])


def direct_logit_attribution(
    model: Any,
    resid0: torch.Tensor,
    final: torch.Tensor,
    attn_out: torch.Tensor,
    mlp_out: torch.Tensor,
    z: torch.Tensor,
    target: int,
) -> tuple[list[tuple[str, float]], list[list[float]]]:
    """Each component's contribution to the target logit at the last position (final-norm scale frozen)."""
    direction = model.W_U[:, target].float()
    n = attn_out.shape[0]
    stack = torch.cat(
        [resid0[None], torch.stack([t for li in range(n) for t in (attn_out[li], mlp_out[li])])]
    )
    dla = (model.norm_linear(stack.to(model.dtype), final.to(model.dtype)).float() @ direction).tolist()
    labels = ["embed"] + [f"{kind}{li}" for li in range(n) for kind in ("attn", "mlp")]
    heads = []
    for li in range(n):
        per_head = torch.einsum("hd,hdm->hm", z[li].to(model.dtype), model.W_O(li))  # [head, d_model]
        heads.append((model.norm_linear(per_head, final.to(model.dtype)).float() @ direction).tolist())
    return list(zip(labels, dla, strict=False)), heads


def neuron_attribution(
    model: Any, final: torch.Tensor, post: torch.Tensor, target: int, k: int
) -> list[dict[str, Any]]:
    """The ``k`` MLP neurons with the largest direct effect on the target logit at the last position:
    activation x (its output row through the frozen final norm) . the target's unembedding."""
    direction = model.W_U[:, target].float()
    rows = []
    for li in range(post.shape[0]):
        w = model.norm_linear(model.W_out(li), final.to(model.dtype)).float()  # [d_mlp, d_model]
        rows.append(post[li] * (w @ direction))
    dla = torch.stack(rows)  # [layer, d_mlp]
    top = dla.abs().flatten().topk(min(k, dla.numel())).indices
    d_mlp = dla.shape[1]
    return [
        {
            "layer": int(i) // d_mlp,
            "neuron": int(i) % d_mlp,
            "value": float(dla.flatten()[i]),
            "activation": float(post.flatten()[i]),
        }
        for i in top
    ]


def token_gradients(model: Any, ids: torch.Tensor, ivs: Sequence[Intervention], target: int) -> list[float]:
    """Gradient x input on the embeddings for the target logit at the last position."""
    held: dict[str, torch.Tensor] = {}

    def grab(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        held["embed"] = x
        return x

    # The worker runs under inference_mode; gradients need ordinary tensors, hence the clone outside it.
    with torch.inference_mode(False), torch.enable_grad():
        logits = model.run_with_hooks(
            ids.clone()[None], fwd_hooks=[("hook_embed", grab)], interventions=list(ivs)
        )
        emb = held["embed"]
        (grad,) = torch.autograd.grad(logits[0, -1, target], emb)
        return (grad * emb).sum(-1)[0].detach().float().tolist()


def check_ids(ids: torch.Tensor, limit: int) -> None:
    if ids.numel() > limit:
        raise PromptLimitError("tokens", int(ids.numel()), limit)
    if ids.numel() == 0:
        raise IndexOutOfRangeError("token", 0, 0)


def rerun_batch(
    model: Any, runs: list[PlainRun], specs: list[Spec], vectors: dict[str, SteeringVectorEntry]
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
    lengths = [int(r.ids.numel()) for r in runs]
    p = max(lengths)
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.full((b, p), pad, dtype=torch.long, device=model.device)
    mask = torch.zeros((b, p), dtype=torch.long, device=model.device)
    start = torch.zeros((b, p, model.cfg.d_model), dtype=model.dtype, device=model.device)
    for i, r in enumerate(runs):
        ids[i, : lengths[i]] = r.ids
        mask[i, : lengths[i]] = 1
        start[i, : lengths[i]] = r.resid[first].to(model.dtype)
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
    rows_ctx: Any = contextlib.nullcontext()
    if any(spec.edits for spec in specs):
        from neuroscope.lab.live import LiveEdits

        live = LiveEdits.of(model)
        per_row = [spec.edits for spec in specs]
        hooks += live.row_hooks(per_row)  # hooked edits after ablations and steering, as in one request
        rows_ctx = live.rows(per_row)
    last = model.final_resid_name
    with rows_ctx:
        _, cache = model.run_with_cache(
            ids, names=[last], stop_at_layer=n, fwd_hooks=hooks, attention_mask=mask, skip_below=first
        )
    final = cache[last]
    rows = final[torch.arange(b), torch.tensor(lengths, device=final.device) - 1]
    logits = model.unembed(model.apply_ln_final(rows)).float()
    return [logits[i] for i in range(b)]
