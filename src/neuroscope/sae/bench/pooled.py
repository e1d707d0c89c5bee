"""Mean-pooled activations of labelled texts: the residual at an SAE's hook and each SAE's latents.

As in SAEBench, a text's activation is the mean over its tokens with special tokens (BOS, EOS, padding) left
out, and an SAE's latent activations are the mean of its per-token codes over the same tokens. We also leave
out massive-activation outliers (tokens whose residual norm is over ``outlier_factor`` × the median), since our
SAEs are trained and scored without them (see docs/sae/README.md); SAEBench has no such rule.

Because an SAE's decoder is linear, everything SCR and TPP ablate can be computed from these means: zeroing
latents ``A`` at every token and adding the SAE error back changes the pooled residual by
``-mean_codes[:, A] @ W_dec[A]`` (the bias and the error cancel), so no per-token tensors are kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import SAEMismatchError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE


@dataclass
class Pooled:
    """``resid [n, d]``: mean residual per text; ``codes[name] [n, d_sae]``: mean SAE latents per text."""

    resid: torch.Tensor
    codes: dict[str, torch.Tensor] = field(default_factory=dict)
    n_tokens: torch.Tensor | None = None  # tokens kept per text
    outlier_norm: float | None = None
    n_outliers: int = 0
    l0: dict[str, float] = field(default_factory=dict)  # mean active latents per kept token, per SAE

    def subset(self, idx: torch.Tensor) -> Pooled:
        return Pooled(
            self.resid[idx],
            {k: v[idx] for k, v in self.codes.items()},
            None if self.n_tokens is None else self.n_tokens[idx],
            self.outlier_norm,
            self.n_outliers,
            self.l0,
        )


def encode_texts(model: HookedModel, texts: Sequence[str], ctx_len: int) -> list[list[int]]:
    """Token ids of each text as ``neuroscope trace`` starts a context (BOS first), cut to ``ctx_len``."""
    from neuroscope.record.datasets import context_special_ids

    bos, _ = context_special_ids(model.tokenizer)
    tok = model.tokenizer
    return [
        [bos, *tok(t, add_special_tokens=False)["input_ids"]][: min(ctx_len, model.cfg.n_ctx)] for t in texts
    ]


def special_ids(model: HookedModel) -> list[int]:
    from neuroscope.record.datasets import context_special_ids

    bos, sep = context_special_ids(model.tokenizer)
    ids = {int(i) for i in getattr(model.tokenizer, "all_special_ids", [])} | {bos}
    return sorted(ids | ({sep} if sep is not None else set()))


def hook_layer(model: HookedModel, hook: str) -> int:
    """Blocks to run so that ``hook`` is recorded (the forward stops after them)."""
    name = model.resolve_hook_name(hook)
    return int(name.split(".")[1]) + 1 if name.startswith("blocks.") else 0


def _batches(
    model: HookedModel, ids: Sequence[Sequence[int]], hook: str, batch_size: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(first index, token ids, attention mask, activations at hook)`` per right-padded batch; the forward
    stops after the hook's block."""
    name = model.resolve_hook_name(hook)
    stop = min(hook_layer(model, name), model.cfg.n_layers)
    pad = special_ids(model)[0]
    for i in range(0, len(ids), batch_size):
        batch = ids[i : i + batch_size]
        toks = torch.full((len(batch), max(len(x) for x in batch)), pad, dtype=torch.long)
        mask = torch.zeros_like(toks)
        for j, x in enumerate(batch):
            toks[j, : len(x)] = torch.tensor(x)
            mask[j, : len(x)] = 1
        _, cache = model.run_with_cache(
            toks.to(model.device), names=[name], stop_at_layer=stop, attention_mask=mask.to(model.device)
        )
        act = cache[name]
        yield i, toks, mask, (act.flatten(2) if act.ndim == 4 else act).float().cpu()


@torch.no_grad()
def token_activations(
    model: HookedModel, ids: Sequence[Sequence[int]], hook: str, batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(acts [T, d], example index [T])`` of every non-special token."""
    special = torch.tensor(special_ids(model))
    rows, owner = [], []
    for i, toks, mask, act in _batches(model, ids, hook, batch_size):
        keep = mask.bool() & ~torch.isin(toks, special)
        rows.append(act[keep])
        owner.append((torch.arange(len(toks))[:, None].expand_as(toks) + i)[keep])
    return torch.cat(rows), torch.cat(owner)


@torch.no_grad()
def position_activations(
    model: HookedModel,
    ids: Sequence[Sequence[int]],
    positions: Sequence[int],
    hook: str,
    batch_size: int = 16,
) -> torch.Tensor:
    """``[n, d]``: the activation at ``hook`` of text ``i`` at token ``positions[i]``."""
    out = []
    for i, toks, _, act in _batches(model, ids, hook, batch_size):
        out.append(act[torch.arange(len(toks)), torch.tensor(positions[i : i + len(toks)])])
    return torch.cat(out)


def mean_by(values: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n, values.shape[-1], dtype=torch.float32)
    out.index_add_(0, owner, values.float())
    counts = torch.bincount(owner, minlength=n).clamp_min(1)
    return out / counts[:, None]


@torch.no_grad()
def pool(
    model: HookedModel,
    texts: Sequence[str],
    hook: str,
    saes: Mapping[str, SAE],
    ctx_len: int = 128,
    batch_size: int = 16,
    outlier_factor: float | None = 10.0,
    chunk: int = 4096,
) -> Pooled:
    """Mean-pooled residual at ``hook`` and mean-pooled latents of every SAE in ``saes`` (all at ``hook``)."""
    ids = encode_texts(model, texts, ctx_len)
    acts, owner = token_activations(model, ids, hook, batch_size)
    for name, sae in saes.items():
        if sae.d_in != acts.shape[-1]:
            raise SAEMismatchError(
                f"{name} takes width {sae.d_in} but {hook} has width {acts.shape[-1]} on {model.cfg.name}."
            )
    limit, n_out = None, 0
    if outlier_factor:
        norms = acts.norm(dim=-1)
        limit = float(outlier_factor * norms.median())
        keep = norms <= limit
        n_out = int((~keep).sum())
        # a text made only of outliers keeps them, so that no text is left empty
        alone = torch.bincount(owner[keep], minlength=len(ids)) == 0
        keep |= alone[owner]
        acts, owner = acts[keep], owner[keep]
    n = len(ids)
    codes: dict[str, torch.Tensor] = {}
    l0: dict[str, float] = {}
    for name, sae in saes.items():
        total, active = torch.zeros(n, sae.d_sae), 0
        for s in range(0, len(acts), chunk):
            z = sae.encode(acts[s : s + chunk].to(sae.W_enc.device)).float().cpu()
            total.index_add_(0, owner[s : s + chunk], z)
            active += int((z > 0).sum())
        codes[name] = total / torch.bincount(owner, minlength=n).clamp_min(1)[:, None]
        l0[name] = active / max(1, len(acts))
    counts = torch.bincount(owner, minlength=n)
    return Pooled(mean_by(acts, owner, n), codes, counts, limit, n_out, l0)


def to_dict(p: Pooled) -> dict[str, Any]:
    return {
        "n_texts": int(p.resid.shape[0]),
        "mean_tokens": float(p.n_tokens.float().mean()) if p.n_tokens is not None else None,
        "outlier_norm": p.outlier_norm,
        "outlier_tokens": p.n_outliers,
    }
