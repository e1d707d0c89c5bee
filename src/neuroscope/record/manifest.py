"""The bookkeeping of a recording folder: the manifest, which shards are complete, what a restart may reuse.

One implementation for every way of recording: the single process (:func:`neuroscope.record.writer.record`)
and the Ray Data driver (:mod:`neuroscope.record.distributed`) open the folder with :class:`Recording`, write
shards with the same :func:`~neuroscope.record.writer.record_shard`, and list each finished shard with
:meth:`Recording.add`, which rewrites the manifest atomically. What a restart trusts is decided here alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from neuroscope.errors import CorruptDataError, InvalidConfigError
from neuroscope.models.loading import file_sha256

if TYPE_CHECKING:
    from neuroscope.record.writer import TraceConfig

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


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


def count_special(token_ids: np.ndarray, special: np.ndarray) -> int:
    return int(np.isin(token_ids, special).sum())


@dataclass(frozen=True)
class ModelHeader:
    """What the manifest needs to know about the model; computed where the model is loaded (the process
    itself, or one Ray task), so a Ray driver never holds the weights."""

    name: str
    config: dict[str, Any]
    n_ctx: int
    n_layers: int
    widths: dict[str, int]
    bos: int
    sep: int | None
    special_ids: tuple[int, ...]


@dataclass
class Recording:
    """An output folder opened for recording: checked against the plan, trusted shards adopted."""

    out: Path
    data: Path
    cfg: TraceConfig
    header: ModelHeader
    shards: dict[str, dict[str, Any]]
    reused: int
    base: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, header: ModelHeader, cfg: TraceConfig, out: str | os.PathLike, data: Path) -> Recording:
        """Refuse a folder recorded with other settings, delete stray temp files, adopt complete shards and
        write the manifest (not complete) before any shard is recorded."""
        if cfg.ctx_len > header.n_ctx:
            raise InvalidConfigError(
                f"ctx_len {cfg.ctx_len} is longer than {header.name}'s context of {header.n_ctx}."
            )
        out_path = Path(out)
        out_path.mkdir(parents=True, exist_ok=True)
        for stray in out_path.glob("*.tmp"):
            stray.unlink(missing_ok=True)
        plan = {
            "format_version": FORMAT_VERSION,
            "model": header.name,
            "hooks": list(cfg.hooks),
            "data_sha256": data_fingerprint(data),
            "split": cfg.split,
            "ctx_len": cfg.ctx_len,
            "shard_contexts": cfg.shard_contexts,
            "dtype": cfg.dtype,
        }
        old = _read_manifest(out_path / MANIFEST)
        if old is not None:
            diff = [k for k, v in plan.items() if old.get(k) != v]
            if diff:
                raise InvalidConfigError(
                    f"{out_path} already holds a recording with different settings ({', '.join(diff)}); "
                    "use another --out folder or delete this one."
                )
        special = np.array(header.special_ids, dtype=np.int64)
        listed = {s["file"]: s for s in (old or {}).get("shards", [])}
        shards = _adopt_shards(out_path, cfg.shard_ranges(), listed, cfg.ctx_len, special)
        single = cfg.hooks[0] if len(cfg.hooks) == 1 else None
        base = {
            **plan,
            "data": str(data),
            "hook": single,
            "d": header.widths[single] if single else None,
            "columns": {n: {"d": header.widths[n]} for n in cfg.hooks},
            "model_config": header.config,
            "bos_token_id": header.bos,
            "separator_token_id": header.sep,
            "special_token_ids": list(header.special_ids),
            "n_contexts": cfg.n_contexts,
            "tokens_requested": cfg.tokens,
        }
        rec = cls(out_path, data, cfg, header, shards, len(shards), base)
        rec.flush()
        return rec

    def pending(self) -> list[tuple[int, int]]:
        return [(s, e) for s, e in self.cfg.shard_ranges() if shard_name(s, e) not in self.shards]

    def add(self, entry: dict[str, Any]) -> None:
        """List a shard that :func:`~neuroscope.record.writer.record_shard` renamed into place."""
        self.shards[entry["file"]] = entry
        self.flush()

    def flush(self, complete: bool = False) -> None:
        ranges = self.cfg.shard_ranges()
        done = [self.shards[shard_name(s, e)] for s, e in ranges if shard_name(s, e) in self.shards]
        n_rows = sum(s["rows"] for s in done)
        n_special = sum(s["special_rows"] for s in done)
        write_json_atomic(
            self.out / MANIFEST,
            {
                **self.base,
                "tokens": n_rows,
                "n_special_tokens": n_special,
                "n_usable_tokens": n_rows - n_special,
                "complete": complete,
                "shards": done,
            },
        )

    def finish(self) -> int:
        """Mark the recording complete (every planned shard listed); the number of rows."""
        missing = self.pending()
        if missing:
            raise CorruptDataError(f"{self.out}: shards {missing[:3]} … were not recorded.")
        for stray in self.out.glob("*.tmp"):  # a worker killed while writing, after this run began
            stray.unlink(missing_ok=True)
        self.flush(complete=True)
        return sum(s["rows"] for s in self.shards.values())


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptDataError(
            f"Manifest {path} is not valid JSON ({e}); delete the folder to record afresh."
        ) from e


def _adopt_shards(
    out: Path,
    ranges: Sequence[tuple[int, int]],
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
            warnings.warn(f"{e} Recording it again.", stacklevel=4)
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
                "special_rows": count_special(tokens, special),
                "sha256": file_sha256(path),
                "bytes": path.stat().st_size,
            }
        else:
            if rows >= 0:
                warnings.warn(
                    f"Shard {path} has {rows} rows, not {expected}; recording it again.", stacklevel=4
                )
            path.unlink()
    return shards
