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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from neuroscope.errors import CorruptDataError, InvalidConfigError
from neuroscope.record.datasets import context_bos_id, iter_contexts, load_documents, resolve_data

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
DTYPES = {"float16": (torch.float16, pa.float16()), "float32": (torch.float32, pa.float32())}
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
            raise InvalidConfigError(f"shard_tokens ({self.shard_tokens}) must be >= ctx_len ({self.ctx_len})")
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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    """The first layer the forward may skip: one past the deepest recorded block, or None (run to the end)."""
    deepest = -1
    for n in names:
        m = _LAYER.match(n)
        if m:
            deepest = max(deepest, int(m.group(1)))
        elif not n.startswith("hook_"):  # ln_final.* needs the whole stack
            return None
    stop = deepest + 1 if deepest >= 0 else 1
    return stop if stop < n_layers else None


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
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> tuple[int, str, int]:
        self.writer.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.final)
        return self.rows, file_sha256(self.final), self.final.stat().st_size


def _plan_fields(model: HookedModel, cfg: TraceConfig, data: Path) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION, "model": model.cfg.name, "hooks": list(cfg.hooks),
        "data": str(data), "data_sha256": data_fingerprint(data), "ctx_len": cfg.ctx_len,
        "shard_contexts": cfg.shard_contexts, "dtype": cfg.dtype,
    }


def record(model: HookedModel, cfg: TraceConfig, out: str | os.PathLike, progress: bool = True) -> TraceResult:
    """Record ``cfg.hooks`` over the first ``cfg.n_contexts`` contexts of ``cfg.data`` into ``out``."""
    t0 = time.perf_counter()
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    data = resolve_data(cfg.data, cfg.split)
    for stray in out_path.glob("*.tmp"):
        stray.unlink()
    plan = _plan_fields(model, cfg, data)
    manifest_path = out_path / MANIFEST
    done: dict[str, dict[str, Any]] = {}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise CorruptDataError(f"Manifest {manifest_path} is not valid JSON: {e}") from e
        diff = [k for k, v in plan.items() if old.get(k) != v]
        if diff:
            raise InvalidConfigError(
                f"{out_path} already holds a recording with different settings ({', '.join(diff)}); "
                "use another --out folder or delete this one."
            )
        done = {s["file"]: s for s in old.get("shards", [])}
    d_of = {n: _hook_width(model, n) for n in cfg.hooks}
    torch_dtype, pa_dtype = DTYPES[cfg.dtype]
    schema = pa.schema(
        [("doc_id", pa.int64()), ("pos", pa.int32()), ("token_id", pa.int32())]
        + [(n, pa.list_(pa_dtype, d_of[n])) for n in cfg.hooks]
    )
    ranges = cfg.shard_ranges()
    ctx_len = cfg.ctx_len
    shards: dict[str, dict[str, Any]] = {}
    for start, end in ranges:
        name = shard_name(start, end)
        path = out_path / name
        if not path.exists():
            continue
        expected = (end - start) * ctx_len
        try:
            rows = footer_rows(path)
        except CorruptDataError:
            rows = -1
        entry = done.get(name)
        if rows == expected and entry is not None and entry.get("rows") == rows:
            shards[name] = entry
        elif rows == expected:  # renamed just before a kill, never listed: complete by construction
            shards[name] = {"file": name, "start": start, "end": end, "rows": rows,
                            "sha256": file_sha256(path), "bytes": path.stat().st_size}
        else:
            path.unlink()
    reused = len(shards)
    tok = model.tokenizer
    special = sorted({int(i) for i in getattr(tok, "all_special_ids", [])} | {context_bos_id(tok)})
    manifest = {
        **plan, "model_config": model.cfg.to_dict() if hasattr(model.cfg, "to_dict") else {},
        "split": cfg.split, "columns": {n: {"d": d_of[n]} for n in cfg.hooks},
        "bos_token_id": context_bos_id(tok), "special_token_ids": special,
        "n_contexts": cfg.n_contexts, "complete": False,
    }

    def flush_manifest(complete: bool = False) -> None:
        listed = [shards[shard_name(s, e)] for s, e in ranges if shard_name(s, e) in shards]
        write_json_atomic(manifest_path, {**manifest, "shards": listed, "tokens": sum(s["rows"] for s in listed),
                                          "complete": complete})

    flush_manifest()
    pending = [(s, e) for s, e in ranges if shard_name(s, e) not in shards]
    stop = stop_layer_for(cfg.hooks, model.cfg.n_layers)
    total = cfg.n_contexts * ctx_len
    bar = _progress(progress, total, total - sum((e - s) * ctx_len for s, e in pending))
    recorded = 0
    pending_iter = iter(pending)
    current = next(pending_iter, None)
    writer: _ShardWriter | None = None
    batch: list[tuple[int, torch.Tensor]] = []

    def run_batch() -> None:
        nonlocal batch
        if not batch:
            return
        ids = torch.stack([t for _, t in batch]).to(model.device)
        with torch.inference_mode():
            _, cache = model.run_with_cache(ids, names=list(cfg.hooks), stop_at_layer=stop)
        n = ids.numel()
        cols: dict[str, Any] = {
            "doc_id": pa.array(np.repeat(np.array([i for i, _ in batch], dtype=np.int64), ctx_len)),
            "pos": pa.array(np.tile(np.arange(ctx_len, dtype=np.int32), len(batch))),
            "token_id": pa.array(ids.reshape(-1).cpu().numpy().astype(np.int32)),
        }
        for name in cfg.hooks:
            flat = cache[name].reshape(n, -1).to(torch_dtype).cpu().numpy().reshape(-1)
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa_dtype), d_of[name])
        assert writer is not None
        writer.write(pa.table(cols, schema=schema))
        bar.update(n)
        batch = []

    for idx, ctx in enumerate(iter_contexts(load_documents(data), tok, ctx_len, cfg.n_contexts)):
        if current is None:
            break
        if idx < current[0]:
            continue
        if writer is None:
            writer = _ShardWriter(out_path / shard_name(*current), schema)
        batch.append((idx, ctx))
        if len(batch) == cfg.batch_size or idx == current[1] - 1:
            run_batch()
        if idx == current[1] - 1:
            rows, sha, size = writer.close()
            name = shard_name(*current)
            shards[name] = {"file": name, "start": current[0], "end": current[1], "rows": rows,
                            "sha256": sha, "bytes": size}
            flush_manifest()
            writer, recorded = None, recorded + 1
            current = next(pending_iter, None)
    bar.close()
    if current is not None:
        if writer is not None:
            writer.writer.close()
            writer.tmp.unlink(missing_ok=True)
        got = sum(s["rows"] for s in shards.values())
        raise InvalidConfigError(
            f"The corpus {data} ran out after {got} tokens; asked for {total}. Ask for fewer --tokens."
        )
    flush_manifest(complete=True)
    secs = time.perf_counter() - t0
    n_tok = sum(s["rows"] for s in shards.values())
    return TraceResult(str(out_path), n_tok, len(shards), recorded, reused, round(secs, 3),
                       round(recorded and sum((e - s) * ctx_len for s, e in pending) / secs, 1), list(cfg.hooks))


def _hook_width(model: HookedModel, name: str) -> int:
    ids = torch.zeros(1, 2, dtype=torch.long, device=model.device)
    with torch.inference_mode():
        _, cache = model.run_with_cache(ids, names=[name], stop_at_layer=stop_layer_for([name], model.cfg.n_layers))
    t = cache[name]
    return int(t[0, 0].numel())


def _progress(enabled: bool, total: int, initial: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="tok", disable=not enabled, desc="trace", smoothing=0.1)
