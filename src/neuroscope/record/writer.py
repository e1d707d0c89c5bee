"""Record activations into Parquet shards with a manifest, resumable after ``kill -9``.

Layout of an output folder::

    manifest.json                 what was recorded and which shards are complete (replaced atomically)
    shard-00000000-00000512.parquet   contexts [0, 512): doc_id, pos, token_id, one column per hook

Context ``i`` of the corpus is the same on every run (see :func:`~neuroscope.record.datasets.iter_contexts`),
so a shard is named by the context range it holds. A shard is written to ``*.tmp`` and renamed into place
only when complete; the manifest is rewritten (temp file + ``os.replace``) after each rename. A restart
deletes stray temp files, re-reads every shard's Parquet footer before trusting it, adopts a complete shard
that was renamed but not yet listed, and records only the ranges that are still missing, so the final data
has every ``(doc_id, pos)`` exactly once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from neuroscope.errors import CorruptDataError, InvalidConfigError
from neuroscope.models.loading import file_sha256
from neuroscope.record.datasets import context_special_ids, iter_contexts, load_documents, resolve_data

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
DTYPES = {"float16": (torch.float16, pa.float16()), "float32": (torch.float32, pa.float32())}
INDEX_COLUMNS = ("doc_id", "pos", "token_id")
_LAYER = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class TraceConfig:
    """What to record. ``tokens`` is rounded up to whole contexts of ``ctx_len`` tokens."""

    hooks: tuple[str, ...]
    data: str
    split: str = "train"
    tokens: int = 200_000
    ctx_len: int = 128
    batch_size: int = 8
    shard_tokens: int = 65_536
    dtype: str = "float16"

    def __post_init__(self) -> None:
        if not self.hooks:
            raise InvalidConfigError("TraceConfig needs at least one hook")
        if self.tokens < 1:
            raise InvalidConfigError(f"tokens must be >= 1, got {self.tokens}")
        if self.ctx_len < 2:
            raise InvalidConfigError(f"ctx_len must be >= 2, got {self.ctx_len}")
        if self.batch_size < 1:
            raise InvalidConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.shard_tokens < self.ctx_len:
            raise InvalidConfigError(
                f"shard_tokens ({self.shard_tokens}) must be >= ctx_len ({self.ctx_len})"
            )
        if self.dtype not in DTYPES:
            raise InvalidConfigError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")

    @property
    def n_contexts(self) -> int:
        return math.ceil(self.tokens / self.ctx_len)

    @property
    def shard_contexts(self) -> int:
        return self.shard_tokens // self.ctx_len

    def shard_ranges(self) -> list[tuple[int, int]]:
        c, n = self.shard_contexts, self.n_contexts
        return [(s, min(s + c, n)) for s in range(0, n, c)]


@dataclass
class TraceResult:
    out: str
    tokens: int
    n_shards: int
    shards_recorded: int
    shards_reused: int
    seconds: float
    tokens_per_s: float
    hooks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shard_name(start: int, end: int) -> str:
    return f"shard-{start:08d}-{end:08d}.parquet"


def footer_rows(path: Path) -> int:
    """Row count from the Parquet footer; a truncated or garbled file raises an error naming it."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as e:
        raise CorruptDataError(f"Shard {path} is corrupt (its Parquet footer cannot be read: {e}).") from e


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def data_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def stop_layer_for(names: Sequence[str], n_layers: int) -> int | None:
    """Where the forward may stop: the first block nothing recorded needs (``n_layers`` skips only the final
    norm and unembedding), or None when a hook such as ``ln_final.hook_normalized`` needs the whole model."""
    stop = 0  # hook_embed / hook_pos_embed fire before block 0 runs
    for n in names:
        m = _LAYER.match(n)
        if m:
            layer = int(m.group(1))
            # resid_pre is read on the way into block l, before the stop check there
            stop = max(stop, layer if n.endswith(".hook_resid_pre") else layer + 1)
        elif not n.startswith("hook_"):
            return None
    return min(stop, n_layers)


def resolve_hooks(model: HookedModel, layers: Sequence[int], hooks: Sequence[str]) -> tuple[str, ...]:
    """``--layer 15 --hook resid_post`` → ``blocks.15.hook_resid_post``; full names pass through."""
    names: list[str] = []
    for h in hooks:
        if h.startswith(("blocks.", "hook_", "ln_final")):
            names.append(model.resolve_hook_name(h))
            continue
        if not layers:
            raise InvalidConfigError(f"Hook {h!r} is not a full hook name; give --layer too")
        short = h if h.startswith(("hook_", "attn.", "mlp.", "ln1.", "ln2.")) else f"hook_{h}"
        for layer in layers:
            model.check_layer(layer)
            names.append(model.resolve_hook_name(f"blocks.{layer}.{short}"))
    return tuple(dict.fromkeys(names))


class _ShardWriter:
    """One shard: streamed to a temp file row group by row group, renamed into place on close."""

    def __init__(self, final: Path, schema: pa.Schema):
        self.final = final
        self.tmp = final.with_name(final.name + ".tmp")
        # dictionary encoding and min/max statistics on the activation columns cost ~4x the write time
        # and buy nothing for dense floats; the small index columns keep their statistics
        self.writer = pq.ParquetWriter(
            self.tmp, schema, compression="zstd", use_dictionary=False, write_statistics=list(INDEX_COLUMNS)
        )
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)

    def close(self) -> tuple[int, str, int]:
        self.writer.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.final)
        return self.rows, file_sha256(self.final), self.final.stat().st_size


def _plan_fields(model: HookedModel, cfg: TraceConfig, data: Path) -> dict[str, Any]:
    """What must match for a restart to continue an existing recording."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model.cfg.name,
        "hooks": list(cfg.hooks),
        "data_sha256": data_fingerprint(data),
        "split": cfg.split,
        "ctx_len": cfg.ctx_len,
        "shard_contexts": cfg.shard_contexts,
        "dtype": cfg.dtype,
    }


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptDataError(
            f"Manifest {path} is not valid JSON ({e}); delete the folder to record afresh."
        ) from e


def _count_special(token_ids: np.ndarray, special: np.ndarray) -> int:
    return int(np.isin(token_ids, special).sum())


def _adopt_shards(
    out: Path,
    ranges: list[tuple[int, int]],
    listed: dict[str, dict[str, Any]],
    ctx_len: int,
    special: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Shards already on disk that can be trusted: the footer's row count must be that of a whole shard.
    One renamed into place but killed before the manifest listed it is complete by construction (only whole
    files are renamed), so it is adopted; a short or unreadable one is deleted and recorded again, and so is
    one whose range is no longer planned (a later run asked for more or fewer tokens)."""
    shards: dict[str, dict[str, Any]] = {}
    planned = {shard_name(s, e) for s, e in ranges}
    for stray in out.glob("shard-*.parquet"):
        if stray.name not in planned:  # --tokens changed: the old last shard ends elsewhere
            stray.unlink()
    for start, end in ranges:
        name = shard_name(start, end)
        path = out / name
        if not path.exists():
            continue
        expected = (end - start) * ctx_len
        try:
            rows = footer_rows(path)
        except CorruptDataError as e:
            warnings.warn(f"{e} Recording it again.", stacklevel=3)
            rows = -1
        entry = listed.get(name)
        if rows == expected and entry is not None and entry.get("rows") == rows and "special_rows" in entry:
            shards[name] = entry
        elif rows == expected:
            tokens = pq.read_table(path, columns=["token_id"]).column("token_id").to_numpy()
            shards[name] = {
                "file": name,
                "start": start,
                "end": end,
                "rows": rows,
                "special_rows": _count_special(tokens, special),
                "sha256": file_sha256(path),
                "bytes": path.stat().st_size,
            }
        else:
            if rows >= 0:
                warnings.warn(
                    f"Shard {path} has {rows} rows, not {expected}; recording it again.", stacklevel=3
                )
            path.unlink()
    return shards


def record(
    model: HookedModel, cfg: TraceConfig, out: str | os.PathLike, progress: bool = True
) -> TraceResult:
    """Record ``cfg.hooks`` over the first ``cfg.n_contexts`` contexts of ``cfg.data`` into ``out``.

    Running it again with the same settings continues an interrupted recording (or returns at once when it
    is complete); different settings on the same folder are refused rather than mixed.
    """
    t0 = time.perf_counter()
    if cfg.ctx_len > model.cfg.n_ctx:
        raise InvalidConfigError(
            f"ctx_len {cfg.ctx_len} is longer than {model.cfg.name}'s context of {model.cfg.n_ctx}."
        )
    out_path = Path(out)
    data = resolve_data(cfg.data, cfg.split)
    out_path.mkdir(parents=True, exist_ok=True)
    for stray in out_path.glob("*.tmp"):
        stray.unlink()
    plan = _plan_fields(model, cfg, data)
    manifest_path = out_path / MANIFEST
    old = _read_manifest(manifest_path)
    if old is not None:
        diff = [k for k, v in plan.items() if old.get(k) != v]
        if diff:
            raise InvalidConfigError(
                f"{out_path} already holds a recording with different settings ({', '.join(diff)}); "
                "use another --out folder or delete this one."
            )
    d_of = {n: _hook_width(model, n) for n in cfg.hooks}
    torch_dtype, pa_dtype = DTYPES[cfg.dtype]
    schema = pa.schema(
        [("doc_id", pa.int64()), ("pos", pa.int32()), ("token_id", pa.int32())]
        + [(n, pa.list_(pa_dtype, d_of[n])) for n in cfg.hooks]
    )
    ranges = cfg.shard_ranges()
    ctx_len = cfg.ctx_len
    tok = model.tokenizer
    bos, sep = context_special_ids(tok)
    special_ids = sorted(
        {int(i) for i in getattr(tok, "all_special_ids", [])} | {bos} | ({sep} if sep is not None else set())
    )
    special = np.array(special_ids, dtype=np.int64)
    listed = {s["file"]: s for s in (old or {}).get("shards", [])}
    shards = _adopt_shards(out_path, ranges, listed, ctx_len, special)
    reused = len(shards)
    single = cfg.hooks[0] if len(cfg.hooks) == 1 else None
    manifest = {
        **plan,
        "data": str(data),
        "hook": single,
        "d": d_of[single] if single else None,
        "columns": {n: {"d": d_of[n]} for n in cfg.hooks},
        "model_config": model.cfg.to_dict() if hasattr(model.cfg, "to_dict") else {},
        "bos_token_id": bos,
        "separator_token_id": sep,
        "special_token_ids": special_ids,
        "n_contexts": cfg.n_contexts,
        "tokens_requested": cfg.tokens,
    }

    def flush_manifest(complete: bool = False) -> None:
        done = [shards[shard_name(s, e)] for s, e in ranges if shard_name(s, e) in shards]
        n_rows = sum(s["rows"] for s in done)
        n_special = sum(s["special_rows"] for s in done)
        write_json_atomic(
            manifest_path,
            {
                **manifest,
                "tokens": n_rows,
                "n_special_tokens": n_special,
                "n_usable_tokens": n_rows - n_special,
                "complete": complete,
                "shards": done,
            },
        )

    flush_manifest()
    pending = [(s, e) for s, e in ranges if shard_name(s, e) not in shards]
    stop = stop_layer_for(cfg.hooks, model.cfg.n_layers)
    total = cfg.n_contexts * ctx_len
    pending_tokens = sum((e - s) * ctx_len for s, e in pending)
    bar = _progress(progress, total, total - pending_tokens)
    pending_iter = iter(pending)
    current = next(pending_iter, None)
    writer: _ShardWriter | None = None
    batch: list[tuple[int, torch.Tensor]] = []
    n_special_in_shard = 0
    n_seen = 0

    def run_batch() -> None:
        nonlocal batch, n_special_in_shard
        ids = torch.stack([t for _, t in batch]).to(model.device)
        with torch.inference_mode():
            _, cache = model.run_with_cache(ids, names=list(cfg.hooks), stop_at_layer=stop)
        n = ids.numel()
        token_ids = ids.reshape(-1).cpu().numpy()
        cols: dict[str, Any] = {
            "doc_id": pa.array(np.repeat(np.array([i for i, _ in batch], dtype=np.int64), ctx_len)),
            "pos": pa.array(np.tile(np.arange(ctx_len, dtype=np.int32), len(batch))),
            "token_id": pa.array(token_ids.astype(np.int32)),
        }
        for name in cfg.hooks:
            flat = cache[name].reshape(n, -1).to(torch_dtype).cpu().numpy().reshape(-1)
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa_dtype), d_of[name])
        assert writer is not None
        writer.write(pa.table(cols, schema=schema))
        n_special_in_shard += _count_special(token_ids, special)
        bar.update(n)
        batch = []

    contexts = iter_contexts(load_documents(data), tok, ctx_len, cfg.n_contexts, source=f"The corpus {data}")
    try:
        for idx, ctx in enumerate(contexts):
            n_seen = idx + 1
            if current is None:
                break
            if idx < current[0]:
                continue
            if writer is None:
                writer = _ShardWriter(out_path / shard_name(*current), schema)
            batch.append((idx, ctx))
            last_in_shard = idx == current[1] - 1
            if len(batch) == cfg.batch_size or last_in_shard:
                run_batch()
            if last_in_shard:
                rows, sha, size = writer.close()
                name = shard_name(*current)
                shards[name] = {
                    "file": name,
                    "start": current[0],
                    "end": current[1],
                    "rows": rows,
                    "special_rows": n_special_in_shard,
                    "sha256": sha,
                    "bytes": size,
                }
                flush_manifest()
                writer, n_special_in_shard = None, 0
                current = next(pending_iter, None)
    finally:
        bar.close()
        if writer is not None:
            writer.abort()
    if current is not None:
        raise InvalidConfigError(
            f"The corpus {data} holds only {n_seen} contexts of {ctx_len} tokens ({n_seen * ctx_len} tokens); "
            f"asked for {cfg.n_contexts} ({total} tokens). Ask for at most --tokens {n_seen * ctx_len} or add text."
        )
    flush_manifest(complete=True)
    secs = time.perf_counter() - t0
    n_tok = sum(s["rows"] for s in shards.values())
    return TraceResult(
        str(out_path),
        n_tok,
        len(shards),
        len(shards) - reused,
        reused,
        round(secs, 3),
        round(pending_tokens / secs, 1) if pending_tokens else 0.0,
        list(cfg.hooks),
    )


def _hook_width(model: HookedModel, name: str) -> int:
    ids = torch.zeros(1, 2, dtype=torch.long, device=model.device)
    with torch.inference_mode():
        _, cache = model.run_with_cache(
            ids, names=[name], stop_at_layer=stop_layer_for([name], model.cfg.n_layers)
        )
    return int(cache[name][0, 0].numel())


def _progress(enabled: bool, total: int, initial: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="tok", disable=not enabled, desc="trace", smoothing=0.1)
