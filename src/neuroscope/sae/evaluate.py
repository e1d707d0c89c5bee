"""Held-out evaluation: reconstruction (FVU, explained variance), sparsity (L0, dead, dense) and
CE loss recovered with the reconstruction spliced into the model.

Definitions (the JSON repeats them under ``definitions``):

- FVU = mean over held-out tokens of ||x − x̂||² divided by mean over the same tokens of ||x − μ||², μ the
  held-out mean (SAELens's normalised MSE); explained variance = 1 − FVU.
- Special tokens (the manifest's ``special_token_ids``: BOS/EOS/padding) are excluded from every
  statistic. Their residual vectors at middle layers of Llama-family models are huge-norm outliers
  (BOS's norm is tens of times a normal token's) that SAEs are not trained on and that would dominate
  both numerator and denominator.
- Massive-activation outliers: a few non-special tokens (at smollm2-135m layer 15: the first token after
  BOS and some newlines, ~0.2% of tokens) have residual norms ~100× the median and carry ~98% of the
  variance. With them in, FVU measures little but those tokens; the headline numbers therefore leave out
  tokens whose norm exceeds ``outlier_factor`` (10) × the held-out median norm, and the same numbers
  with them kept (special tokens still out, SAELens's definition) are reported as ``*_including_outliers``.
- CE loss recovered = (L_zero − L_spliced) / (L_zero − L_clean), next-token loss on held-out contexts;
  spliced and zero-ablated runs replace the hook's activation at every non-special, non-outlier position
  (those keep their clean activation, as in training; ``*_including_outliers`` splices outliers too);
  losses average over predictions whose input and target tokens are both non-special.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.record.reader import ActivationStore
from neuroscope.sae.loader import outlier_norm
from neuroscope.sae.model import SAE
from neuroscope.sae.splice import SpliceSAE, special_mask

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

DENSE_THRESHOLD = 0.1


@dataclass
class EvalResult:
    sae: str
    arch: str
    d_in: int
    d_sae: int
    k: int | None
    hook: str
    n_tokens: int
    fvu: float
    explained_variance: float
    mse: float
    l0: float
    dead_fraction: float
    dense_fraction: float
    ce_clean: float | None = None
    ce_zero_ablation: float | None = None
    ce_spliced: float | None = None
    ce_loss_recovered: float | None = None
    ce_tokens: int = 0
    ce_spliced_including_outliers: float | None = None
    ce_loss_recovered_including_outliers: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**d, **extra}


def check_width(sae: SAE, store: ActivationStore, hook: str) -> None:
    d = store.d(hook)
    if d != sae.d_in:
        raise InvalidConfigError(
            f"The SAE has d_in={sae.d_in} but hook {hook} in {store.path} has width {d}: evaluate it on "
            f"activations of its own hook{' (' + sae.cfg.hook_name + ')' if sae.cfg.hook_name else ''}."
        )


class _Acc:
    """Running sums for FVU and sparsity over one set of tokens."""

    def __init__(self, d_in: int, d_sae: int):
        self.n = 0
        self.sum_x = torch.zeros(d_in, dtype=torch.float64)
        self.sum_sq = torch.zeros((), dtype=torch.float64)
        self.sse = torch.zeros((), dtype=torch.float64)
        self.l0 = 0.0
        self.fires = torch.zeros(d_sae, dtype=torch.float64)

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor) -> None:
        active = z > 0
        self.n += x.shape[0]
        self.sum_x += x.double().sum(0)
        self.sum_sq += x.double().pow(2).sum()
        self.sse += (x - x_hat).double().pow(2).sum()
        self.l0 += float(active.sum())
        self.fires += active.double().sum(0)

    def result(self, d_in: int) -> dict[str, Any]:
        n = max(self.n, 1)
        mean = self.sum_x / n
        total = self.sum_sq / n - mean.pow(2).sum()
        fvu = float((self.sse / n) / total) if self.n else float("nan")
        density = self.fires / n
        return {
            "n_tokens": self.n,
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
            "mse": float(self.sse / n) / d_in,
            "l0": self.l0 / n,
            "dead_fraction": float((self.fires == 0).double().mean()),
            "dense_fraction": float((density > DENSE_THRESHOLD).double().mean()),
            "density": density,
        }


@torch.no_grad()
def reconstruction_stats(
    sae: SAE,
    store: ActivationStore,
    hook: str | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = None,
    max_norm: float | None = None,
) -> dict[str, Any]:
    """FVU and sparsity over non-special tokens; with ``max_norm``, over tokens whose norm is at most
    ``max_norm`` too, and the same numbers with those outliers included under ``including_outliers``."""
    hook = store.hook(hook)
    check_width(sae, store, hook)
    typical, everything = _Acc(sae.d_in, sae.d_sae), _Acc(sae.d_in, sae.d_sae)
    for b in store.iter_batches(batch_size, hook, shuffle=False, exclude_special=True):
        x = b.acts.float()
        z = sae.encode(x)
        x_hat = sae.decode(z)
        everything.add(x, x_hat, z)
        if max_norm is not None:
            ok = x.norm(dim=-1) <= max_norm
            typical.add(x[ok], x_hat[ok], z[ok])
        if max_tokens is not None and everything.n >= max_tokens:
            break
    if everything.n == 0:
        raise InvalidConfigError(f"{store.path} has no non-special tokens to evaluate on.")
    if max_norm is None:
        return everything.result(sae.d_in)
    out = typical.result(sae.d_in)
    incl = everything.result(sae.d_in)
    incl.pop("density")
    out["outlier_tokens"] = everything.n - typical.n
    out["including_outliers"] = incl
    return out


def heldout_contexts(store: ActivationStore, n_contexts: int, hook: str | None = None) -> torch.Tensor:
    """The recorded token contexts ``[n, ctx_len]`` in recording order (doc_id = context index)."""
    ctx_len = int(store.manifest.get("ctx_len", 0))
    if ctx_len < 2:
        raise InvalidConfigError(f"{store.path}'s manifest has no usable ctx_len; cannot rebuild contexts.")
    b = store.read_all(hook, max_tokens=n_contexts * ctx_len)
    order = torch.argsort(b.doc_id * ctx_len + b.pos)
    tok = b.token_id[order]
    n = tok.shape[0] // ctx_len
    return tok[: n * ctx_len].reshape(n, ctx_len)


def _nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    return -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)


# The clean and zero-ablated runs do not depend on the SAE: evaluating several SAEs on the same contexts
# (a frontier) reuses them. One entry, keyed by everything they depend on.
_BASELINE: dict[tuple, list[tuple[torch.Tensor, torch.Tensor, float, float]]] = {}


def _baselines(
    model: HookedModel,
    contexts: torch.Tensor,
    name: str,
    special_ids: list[int],
    max_norm: float | None,
    batch_size: int,
) -> list[tuple[torch.Tensor, torch.Tensor, float, float]]:
    key = (
        id(model),
        name,
        max_norm,
        tuple(special_ids),
        batch_size,
        tuple(contexts.shape),
        hash(contexts.cpu().numpy().tobytes()),
    )
    if key not in _BASELINE:
        out = []
        for i in range(0, contexts.shape[0], batch_size):
            ids = contexts[i : i + batch_size].to(model.device)
            special = special_mask(ids, special_ids)
            logits_clean, cache = model.run_with_cache(ids, names=[name])
            keep = special
            if max_norm is not None:
                keep = special | (cache[name].float().norm(dim=-1) > max_norm)
            valid = ~(special[:, :-1] | special[:, 1:])

            def zero(x: torch.Tensor, hp: Any, keep: torch.Tensor = keep) -> torch.Tensor:
                return torch.where(keep[..., None], x, torch.zeros_like(x))

            logits_zero = model.run_with_hooks(ids, fwd_hooks=[(name, zero)])
            assert logits_clean is not None
            out.append(
                (
                    keep,
                    special,
                    float(_nll(logits_clean, ids)[valid].sum()),
                    float(_nll(logits_zero, ids)[valid].sum()),
                )
            )
        _BASELINE.clear()
        _BASELINE[key] = out
    return _BASELINE[key]


@torch.no_grad()
def ce_recovered(
    model: HookedModel,
    sae: SAE,
    contexts: torch.Tensor,
    hook: str,
    special_ids: list[int],
    max_norm: float | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Clean, zero-ablated and spliced next-token loss. Special tokens (and, with ``max_norm``, outlier
    tokens) keep their clean activation; ``spliced_all`` also splices the outliers."""
    name = model.resolve_hook_name(hook)
    sums = {"clean": 0.0, "zero": 0.0, "spliced": 0.0, "spliced_all": 0.0}
    count = 0
    base = _baselines(model, contexts, name, special_ids, max_norm, batch_size)
    for (keep, special, clean_sum, zero_sum), i in zip(
        base, range(0, contexts.shape[0], batch_size), strict=True
    ):
        ids = contexts[i : i + batch_size].to(model.device)
        valid = ~(special[:, :-1] | special[:, 1:])
        sums["clean"] += clean_sum
        sums["zero"] += zero_sum
        runs = {
            "spliced": model.run_with_hooks(ids, interventions=[SpliceSAE(sae, hook=name, keep_mask=keep)])
        }
        if max_norm is not None:
            runs["spliced_all"] = model.run_with_hooks(
                ids, interventions=[SpliceSAE(sae, hook=name, keep_mask=special)]
            )
        for k, logits in runs.items():
            sums[k] += float(_nll(logits, ids)[valid].sum())
        count += int(valid.sum())
    mean = {k: v / max(count, 1) for k, v in sums.items()}
    clean, zero_l = mean["clean"], mean["zero"]
    denom = zero_l - clean

    def recovered(loss: float) -> float | None:
        return (zero_l - loss) / denom if abs(denom) > 1e-12 else None

    out = {
        "ce_clean": clean,
        "ce_zero_ablation": zero_l,
        "ce_spliced": mean["spliced"],
        "ce_loss_recovered": recovered(mean["spliced"]),
        "ce_tokens": count,
    }
    if max_norm is not None:
        out["ce_spliced_including_outliers"] = mean["spliced_all"]
        out["ce_loss_recovered_including_outliers"] = recovered(mean["spliced_all"])
    return out


def evaluate_sae(
    sae: SAE,
    heldout: ActivationStore | str | os.PathLike,
    model: HookedModel | None = None,
    hook: str | None = None,
    ce_contexts: int = 64,
    name: str = "",
    batch_size: int = 4096,
    outlier_factor: float | None = 10.0,
) -> EvalResult:
    """``outlier_factor``: tokens whose norm exceeds this multiple of the held-out median norm are
    reported separately (the headline numbers leave them out; ``*_including_outliers`` keep them);
    None treats them like any other token."""
    store = heldout if isinstance(heldout, ActivationStore) else ActivationStore(heldout)
    hook = store.hook(hook or (sae.cfg.hook_name if sae.cfg.hook_name in store.hooks else None))
    check_width(sae, store, hook)
    max_norm = None
    if outlier_factor is not None:
        max_norm = outlier_norm(store.sample(16_384, hook=hook), outlier_factor)
    stats = reconstruction_stats(sae, store, hook, batch_size, max_norm=max_norm)
    stats.pop("density")
    incl = stats.pop("including_outliers", None)
    extra: dict[str, Any] = {"outlier_norm": max_norm, "outlier_tokens": stats.pop("outlier_tokens", 0)}
    if incl is not None:
        extra.update(
            {
                "fvu_including_outliers": incl["fvu"],
                "explained_variance_including_outliers": incl["explained_variance"],
                "l0_including_outliers": incl["l0"],
                "n_tokens_including_outliers": incl["n_tokens"],
            }
        )
    ce: dict[str, Any] = {}
    if model is not None and ce_contexts > 0:
        contexts = heldout_contexts(store, ce_contexts, hook)
        ce = ce_recovered(model, sae, contexts, hook, store.special_token_ids, max_norm)
    return EvalResult(
        sae=name,
        arch=sae.cfg.arch,
        d_in=sae.d_in,
        d_sae=sae.d_sae,
        k=sae.cfg.k if sae.arch.uses_k else None,
        hook=hook,
        **stats,
        **ce,
        extra=extra,
    )


DEFINITIONS = {
    "fvu": "mean_tokens ||x - x_hat||^2 / mean_tokens ||x - mean(x)||^2 over held-out non-special tokens",
    "explained_variance": "1 - fvu",
    "mse": "mean over tokens and dimensions of (x - x_hat)^2, raw activation units",
    "l0": "mean number of nonzero latents per held-out token",
    "dead_fraction": "fraction of latents that never fire on the held-out tokens",
    "dense_fraction": f"fraction of latents firing on more than {DENSE_THRESHOLD:.0%} of held-out tokens",
    "ce_loss_recovered": "(L_zero - L_spliced) / (L_zero - L_clean), next-token loss on held-out contexts",
    "special_tokens": "the manifest's special_token_ids (BOS/EOS/padding) are excluded from every statistic "
    "and are never replaced when splicing; their layer-15 residual norms are huge outliers",
    "outliers": "non-special tokens with norm > outlier_factor (10) x the held-out median norm (massive "
    "activations: first token after BOS, some newlines); left out of the headline numbers and kept in "
    "the *_including_outliers ones (= SAELens's definition: only special tokens excluded)",
}
