"""Per-feature statistics, computed once per SAE and stored next to it for fast paging and search.

``compute_features`` makes one pass over a recorded store and writes ``<out>/``:

- ``features.parquet``: one row per latent: ``id``, ``density`` (fraction of tokens where it fires;
  special tokens and massive-activation outliers are left out, as in training), ``mean_activation``
  (over the tokens where it fires), ``max_activation``, ``top_tokens`` (the tokens it fires on most among
  its strongest ``n_examples`` activations, weighted by activation) and logit effects (its decoder row
  through the unembedding ``W_dec[f] @ W_U``: top and bottom tokens).
- ``contexts.parquet``: the ``top_contexts`` strongest activations per feature with ``doc_id``/``pos``
  (context index and position in the recorded store) and a token window around the token.
- ``meta.json``: what was computed from what.

:class:`FeatureStore` loads these into columns once; paging, sorting and searching then work on
in-memory arrays (sub-millisecond for a few thousand features).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, ResourceNotFoundError
from neuroscope.record.reader import ActivationStore
from neuroscope.sae.evaluate import check_width
from neuroscope.sae.loader import outlier_norm
from neuroscope.sae.model import SAE

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

FEATURES_FILE = "features.parquet"
CONTEXTS_FILE = "contexts.parquet"
META_FILE = "meta.json"
SORT_KEYS = ("id", "density", "mean_activation", "max_activation")


@dataclass(frozen=True)
class FeatureConfig:
    top_contexts: int = 20
    n_examples: int = 64
    n_top_tokens: int = 10
    n_logit_tokens: int = 10
    window_before: int = 8
    window_after: int = 4
    max_tokens: int | None = None
    batch_size: int = 2048
    outlier_factor: float | None = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.top_contexts <= self.n_examples:
            raise InvalidConfigError(
                f"top_contexts must be in 1..n_examples ({self.n_examples}), got {self.top_contexts}"
            )
        for name in ("n_top_tokens", "n_logit_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise InvalidConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window_before < 0 or self.window_after < 0:
            raise InvalidConfigError("window_before and window_after must be >= 0")


def _decode_all(tokenizer: Any, ids: np.ndarray) -> list[str]:
    return [tokenizer.decode([int(i)]) for i in ids]


@torch.no_grad()
def logit_effects(sae: SAE, model: HookedModel, n: int, chunk: int = 512) -> tuple[torch.Tensor, ...]:
    """Each decoder row through the unembedding (no final norm, as Neuronpedia shows it)."""
    W_U = model.W_U.detach().float().cpu()
    if W_U.shape[0] != sae.d_in:
        raise InvalidConfigError(
            f"The SAE has d_in={sae.d_in} but the model's unembedding takes width {W_U.shape[0]}."
        )
    tv, ti, bv, bi = [], [], [], []
    for i in range(0, sae.d_sae, chunk):
        logits = sae.W_dec[i : i + chunk].detach().float().cpu() @ W_U
        v, ix = logits.topk(n, dim=-1)
        tv.append(v)
        ti.append(ix)
        v, ix = (-logits).topk(n, dim=-1)
        bv.append(-v)
        bi.append(ix)
    return torch.cat(tv), torch.cat(ti), torch.cat(bv), torch.cat(bi)


@torch.no_grad()
def compute_features(
    sae: SAE,
    store: ActivationStore | str | os.PathLike,
    model: HookedModel,
    out: str | os.PathLike,
    cfg: FeatureConfig | None = None,
    hook: str | None = None,
) -> Path:
    cfg = cfg or FeatureConfig()
    store = store if isinstance(store, ActivationStore) else ActivationStore(store)
    hook = store.hook(hook or (sae.cfg.hook_name if sae.cfg.hook_name in store.hooks else None))
    check_width(sae, store, hook)
    ctx_len = int(store.manifest["ctx_len"])
    n_ctx = int(store.manifest.get("n_contexts") or -(-store.n_tokens // ctx_len))
    grid = np.full((n_ctx, ctx_len), -1, dtype=np.int64)
    special = torch.tensor(store.special_token_ids, dtype=torch.long)
    # massive-activation outliers are left out as in training and evaluation (see sae.loader.outlier_norm)
    max_norm = outlier_norm(store.sample(16_384, hook=hook), cfg.outlier_factor)
    d_sae, N = sae.d_sae, cfg.n_examples
    best_v = torch.full((N, d_sae), -1.0)
    best_row = torch.zeros((N, d_sae), dtype=torch.long)  # doc_id * ctx_len + pos
    fires = torch.zeros(d_sae, dtype=torch.float64)
    act_sum = torch.zeros(d_sae, dtype=torch.float64)
    n_tok = 0
    for b in store.iter_batches(cfg.batch_size, hook, shuffle=False, exclude_special=False):
        ok_rows = b.doc_id < n_ctx
        if not bool(ok_rows.all()):
            n_ctx2 = int(b.doc_id.max()) + 1
            grid = np.concatenate([grid, np.full((n_ctx2 - grid.shape[0], ctx_len), -1, dtype=np.int64)])
            n_ctx = n_ctx2
        grid[b.doc_id.numpy(), b.pos.numpy()] = b.token_id.numpy()
        keep = (
            ~torch.isin(b.token_id, special)
            if special.numel()
            else torch.ones_like(b.token_id, dtype=torch.bool)
        )
        if max_norm is not None:
            keep &= b.acts.float().norm(dim=-1) <= max_norm
        x, rows = b.acts[keep].float(), (b.doc_id * ctx_len + b.pos)[keep]
        if x.shape[0] == 0:
            continue
        z = sae.encode(x)
        active = z > 0
        fires += active.sum(0).double()
        act_sum += z.sum(0).double()
        n_tok += x.shape[0]
        cand_v = torch.cat([best_v, z])
        cand_r = torch.cat([best_row, rows[:, None].expand(-1, d_sae)])
        best_v, ix = cand_v.topk(N, dim=0)
        best_row = cand_r.gather(0, ix)
        if cfg.max_tokens is not None and n_tok >= cfg.max_tokens:
            break
    if n_tok == 0:
        raise InvalidConfigError(f"{store.path} has no non-special tokens to compute features on.")
    tok = model.tokenizer
    # top tokens: activation-weighted counts over each feature's strongest examples
    ex_tok = torch.from_numpy(grid.reshape(-1))[best_row]  # [N, d_sae]
    w = best_v.clamp_min(0)
    top_ids, top_w = [], []
    for f in range(d_sae):
        ids, inv = torch.unique(ex_tok[:, f], return_inverse=True)
        score = torch.zeros(ids.shape[0]).index_add_(0, inv, w[:, f])
        pos = score > 0
        ids, score = ids[pos], score[pos]
        order = torch.argsort(score, descending=True)[: cfg.n_top_tokens]
        top_ids.append(ids[order].tolist())
        top_w.append([round(float(s), 4) for s in score[order]])
    vocab_cache: dict[int, str] = {}

    def s(i: int) -> str:
        if i not in vocab_cache:
            vocab_cache[i] = tok.decode([int(i)]) if i >= 0 else ""
        return vocab_cache[i]

    tv, ti, bv, bi = logit_effects(sae, model, cfg.n_logit_tokens)
    density = (fires / n_tok).numpy()
    mean_act = (act_sum / fires.clamp_min(1)).numpy()
    features = pa.table(
        {
            "id": np.arange(d_sae, dtype=np.int32),
            "density": density,
            "mean_activation": mean_act,
            "max_activation": best_v[0].clamp_min(0).double().numpy(),
            "top_token_ids": top_ids,
            "top_tokens": [[s(i) for i in ids] for ids in top_ids],
            "top_token_scores": top_w,
            "logit_top_ids": ti.tolist(),
            "logit_top_tokens": [[s(i) for i in row] for row in ti.tolist()],
            "logit_top_values": tv.tolist(),
            "logit_bottom_ids": bi.tolist(),
            "logit_bottom_tokens": [[s(i) for i in row] for row in bi.tolist()],
            "logit_bottom_values": bv.tolist(),
        }
    )
    C = cfg.top_contexts
    cv, cr = best_v[:C].T.reshape(-1), best_row[:C].T.reshape(-1)  # feature-major
    live = cv > 0
    feat = torch.arange(d_sae).repeat_interleave(C)[live]
    rank = torch.arange(C).repeat(d_sae)[live]
    cv, cr = cv[live], cr[live]
    doc_np, pos_np = (cr // ctx_len).numpy(), (cr % ctx_len).numpy()
    windows, centers = [], []
    for d, p in zip(doc_np.tolist(), pos_np.tolist(), strict=True):
        lo, hi = max(0, p - cfg.window_before), min(ctx_len, p + cfg.window_after + 1)
        windows.append(grid[d, lo:hi].tolist())
        centers.append(p - lo)
    contexts = pa.table(
        {
            "feature": feat.numpy().astype(np.int32),
            "rank": rank.numpy().astype(np.int16),
            "activation": cv.numpy().astype(np.float32),
            "doc_id": doc_np,
            "pos": pos_np.astype(np.int32),
            "center": np.array(centers, dtype=np.int16),
            "window_ids": windows,
            "window_tokens": [[s(i) for i in w] for w in windows],
        }
    )
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    pq.write_table(features, out_path / FEATURES_FILE)
    pq.write_table(contexts, out_path / CONTEXTS_FILE)
    meta = {
        "acts": str(store.path),
        "hook": hook,
        "model": model.cfg.name,
        "n_tokens": n_tok,
        "d_sae": d_sae,
        "ctx_len": ctx_len,
        "config": cfg.__dict__,
        "outlier_norm": max_norm,
        "notes": "density/mean over non-special, non-outlier tokens (norm <= outlier_norm); mean_activation over tokens where the feature "
        "fires; logit effects are W_dec[f] @ W_U without the final norm.",
    }
    (out_path / META_FILE).write_text(json.dumps(meta, indent=2))
    return out_path


class FeatureStore:
    """Stored feature statistics, loaded once; table pages, sorting, search and top contexts from memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        for f in (FEATURES_FILE, CONTEXTS_FILE, META_FILE):
            if not (self.path / f).exists():
                raise ResourceNotFoundError(
                    f"No {f} in {self.path}: compute features first (`neuroscope sae-features`)."
                )
        self.meta = json.loads((self.path / META_FILE).read_text())
        t = pq.read_table(self.path / FEATURES_FILE)
        self.n = t.num_rows
        self.cols = {
            c: t.column(c).to_numpy() for c in ("id", "density", "mean_activation", "max_activation")
        }
        # what every table page shows is converted once; the rest stays Arrow and is read per feature
        self.top_tokens: list[list[str]] = t.column("top_tokens").to_pylist()
        self._features = t
        self._search = ["\x00".join(ts).lower() for ts in self.top_tokens]
        c = pq.read_table(self.path / CONTEXTS_FILE)
        self.ctx_feature = c.column("feature").to_numpy()
        self._contexts = c
        # contexts are stored feature-major and rank-sorted: one slice per feature
        self.ctx_start = np.searchsorted(self.ctx_feature, np.arange(self.n + 1))
        self._orders: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.n

    def _row(self, i: int) -> dict[str, Any]:
        return {
            "id": int(self.cols["id"][i]),
            "density": float(self.cols["density"][i]),
            "mean_activation": float(self.cols["mean_activation"][i]),
            "max_activation": float(self.cols["max_activation"][i]),
            "top_tokens": self.top_tokens[i],
        }

    def table(
        self,
        offset: int = 0,
        limit: int = 50,
        sort: str = "id",
        descending: bool = False,
        search: str | None = None,
    ) -> list[dict[str, Any]]:
        """A page of the feature table: id, density, mean/max activation, top tokens."""
        if sort not in SORT_KEYS:
            raise InvalidConfigError(f"sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
        if sort not in self._orders:
            self._orders[sort] = np.argsort(self.cols[sort], kind="stable")
        order = self._orders[sort][::-1] if descending else self._orders[sort]
        if search:
            q = search.lower()
            hit = np.fromiter((q in s for s in self._search), dtype=bool, count=self.n)
            order = order[hit[order]]
        return [self._row(int(i)) for i in order[offset : offset + limit]]

    def page(
        self,
        offset: int = 0,
        limit: int = 50,
        sort: str = "id",
        descending: bool = False,
        search: str | None = None,
        labels: dict[int, str] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A table page and the number of matching features; ``search`` also matches ``labels``, which
        each row then carries (the Features view's table)."""
        if sort not in SORT_KEYS:
            raise InvalidConfigError(f"sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
        if sort not in self._orders:
            self._orders[sort] = np.argsort(self.cols[sort], kind="stable")
        order = self._orders[sort][::-1] if descending else self._orders[sort]
        labels = labels or {}
        if search:
            q = search.lower()
            hit = np.fromiter((q in s for s in self._search), dtype=bool, count=self.n)
            for f, text in labels.items():
                if 0 <= f < self.n and q in text.lower():
                    hit[f] = True
            order = order[hit[order]]
        rows = [self._row(int(i)) for i in order[offset : offset + limit]]
        for r in rows:
            r["label"] = labels.get(r["id"])
        return rows, int(order.shape[0])

    def feature(self, i: int) -> dict[str, Any]:
        self._check(i)
        rest = self._features.slice(i, 1).drop_columns(list(self.cols)).to_pylist()[0]
        return {**rest, **self._row(i)}

    def contexts(self, i: int) -> list[dict[str, Any]]:
        """The feature's strongest activations, strongest first, with token windows."""
        self._check(i)
        lo, hi = int(self.ctx_start[i]), int(self.ctx_start[i + 1])
        return self._contexts.slice(lo, hi - lo).to_pylist()

    def _check(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise IndexOutOfRangeError("feature", i, self.n)
