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

import itertools
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.models.loading import file_sha256
from neuroscope.record.datasets import context_special_ids, iter_contexts, load_documents, resolve_data
from neuroscope.record.manifest import (  # noqa: F401  (re-exported: readers import them from here)
    FORMAT_VERSION,
    MANIFEST,
    ModelHeader,
    Recording,
    count_special,
    data_fingerprint,
    footer_rows,
    shard_name,
    write_json_atomic,
)

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

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

    @classmethod
    def of(cls, rec: Recording, tokens: int, seconds: float, pending_tokens: int) -> TraceResult:
        """What a finished recording reports; the one constructor for the local and the Ray paths."""
        return cls(
            str(rec.out),
            tokens,
            len(rec.shards),
            len(rec.shards) - rec.reused,
            rec.reused,
            round(seconds, 3),
            round(pending_tokens / seconds, 1) if pending_tokens else 0.0,
            list(rec.cfg.hooks),
        )


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

    def __init__(self, final: Path, schema: pa.Schema, tag: str = ""):
        self.final = final
        self.tmp = final.with_name(final.name + (f".{tag}" if tag else "") + ".tmp")
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


@dataclass(frozen=True)
class ShardSpec:
    """What every shard of one recording shares. Small and picklable: a Ray driver sends it to its workers,
    so a shard written by a worker is byte for byte the one the single process writes."""

    hooks: tuple[str, ...]
    widths: tuple[int, ...]
    dtype: str
    ctx_len: int
    batch_size: int
    stop_layer: int | None
    special_ids: tuple[int, ...]

    @classmethod
    def of(cls, cfg: TraceConfig, header: ModelHeader) -> ShardSpec:
        return cls(
            hooks=tuple(cfg.hooks),
            widths=tuple(header.widths[h] for h in cfg.hooks),
            dtype=cfg.dtype,
            ctx_len=cfg.ctx_len,
            batch_size=cfg.batch_size,
            stop_layer=stop_layer_for(cfg.hooks, header.n_layers),
            special_ids=tuple(header.special_ids),
        )

    def schema(self) -> pa.Schema:
        pa_dtype = DTYPES[self.dtype][1]
        return pa.schema(
            [("doc_id", pa.int64()), ("pos", pa.int32()), ("token_id", pa.int32())]
            + [(n, pa.list_(pa_dtype, d)) for n, d in zip(self.hooks, self.widths, strict=True)]
        )


class CorpusExhausted(Exception):
    """The corpus ran out inside a shard (``seen``: contexts read in all); the caller words the error."""

    def __init__(self, seen: int):
        super().__init__(seen)
        self.seen = seen


def record_shard(
    model: HookedModel,
    spec: ShardSpec,
    out: Path,
    start: int,
    end: int,
    contexts: Iterable[torch.Tensor],
    on_batch: Callable[[int], object] | None = None,
    tag: str = "",
) -> dict[str, Any]:
    """Record contexts ``start..end`` (``contexts`` yields them in order) into their shard: written to a
    temp file, renamed into place when whole; returns the shard's manifest entry. The single process and
    every Ray worker call this, so the files do not depend on how the recording was run. ``tag`` goes into
    the temp file's name (a Ray worker puts its pid there)."""
    torch_dtype, pa_dtype = DTYPES[spec.dtype]
    schema = spec.schema()
    special = np.array(spec.special_ids, dtype=np.int64)
    ctx_len = spec.ctx_len
    writer = _ShardWriter(out / shard_name(start, end), schema, tag)
    n_special = 0

    def run_batch(batch: list[tuple[int, torch.Tensor]]) -> None:
        nonlocal n_special
        ids = torch.stack([t for _, t in batch]).to(model.device)
        with torch.inference_mode():
            _, cache = model.run_with_cache(ids, names=list(spec.hooks), stop_at_layer=spec.stop_layer)
        n = ids.numel()
        token_ids = ids.reshape(-1).cpu().numpy()
        cols: dict[str, Any] = {
            "doc_id": pa.array(np.repeat(np.array([i for i, _ in batch], dtype=np.int64), ctx_len)),
            "pos": pa.array(np.tile(np.arange(ctx_len, dtype=np.int32), len(batch))),
            "token_id": pa.array(token_ids.astype(np.int32)),
        }
        for name, d in zip(spec.hooks, spec.widths, strict=True):
            flat = cache[name].reshape(n, -1).to(torch_dtype).cpu().numpy().reshape(-1)
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa_dtype), d)
        writer.write(pa.table(cols, schema=schema))
        n_special += count_special(token_ids, special)
        if on_batch is not None:
            on_batch(n)

    try:
        batch: list[tuple[int, torch.Tensor]] = []
        idx = start
        for ctx in contexts:
            if idx == end:
                break
            batch.append((idx, ctx))
            idx += 1
            if len(batch) == spec.batch_size or idx == end:
                run_batch(batch)
                batch = []
        if idx < end:
            raise CorpusExhausted(idx)
        rows, sha, size = writer.close()
    except BaseException:
        writer.abort()
        raise
    return {
        "file": shard_name(start, end),
        "start": start,
        "end": end,
        "rows": rows,
        "special_rows": n_special,
        "sha256": sha,
        "bytes": size,
    }


def model_header(model: HookedModel, hooks: Sequence[str]) -> ModelHeader:
    tok = model.tokenizer
    bos, sep = context_special_ids(tok)
    special_ids = sorted(
        {int(i) for i in getattr(tok, "all_special_ids", [])} | {bos} | ({sep} if sep is not None else set())
    )
    return ModelHeader(
        name=model.cfg.name,
        config=model.cfg.to_dict() if hasattr(model.cfg, "to_dict") else {},
        n_ctx=model.cfg.n_ctx,
        n_layers=model.cfg.n_layers,
        widths={n: _hook_width(model, n) for n in hooks},
        bos=bos,
        sep=sep,
        special_ids=tuple(special_ids),
    )


def short_corpus_error(data: Path, seen: int, cfg: TraceConfig) -> InvalidConfigError:
    total = cfg.n_contexts * cfg.ctx_len
    return InvalidConfigError(
        f"The corpus {data} holds only {seen} contexts of {cfg.ctx_len} tokens ({seen * cfg.ctx_len} tokens); "
        f"asked for {cfg.n_contexts} ({total} tokens). Ask for at most --tokens {seen * cfg.ctx_len} or add text."
    )


def record(
    model: HookedModel,
    cfg: TraceConfig,
    out: str | os.PathLike,
    progress: bool = True,
    on_tokens: Callable[[int, int], object] | None = None,
) -> TraceResult:
    """Record ``cfg.hooks`` over the first ``cfg.n_contexts`` contexts of ``cfg.data`` into ``out``.

    Running it again with the same settings continues an interrupted recording (or returns at once when it
    is complete); different settings on the same folder are refused rather than mixed. ``on_tokens(done,
    total)`` is called after every batch (a caller's own progress display).
    """
    t0 = time.perf_counter()
    if cfg.ctx_len > model.cfg.n_ctx:
        raise InvalidConfigError(
            f"ctx_len {cfg.ctx_len} is longer than {model.cfg.name}'s context of {model.cfg.n_ctx}."
        )
    data = resolve_data(cfg.data, cfg.split)
    header = model_header(model, cfg.hooks)
    rec = Recording.open(header, cfg, out, data)
    spec = ShardSpec.of(cfg, header)
    pending = rec.pending()
    total = cfg.n_contexts * cfg.ctx_len
    pending_tokens = sum((e - s) * cfg.ctx_len for s, e in pending)
    bar = _progress(progress, total, total - pending_tokens)
    done = total - pending_tokens

    def update(n: int) -> None:
        nonlocal done
        bar.update(n)
        done += n
        if on_tokens is not None:
            on_tokens(done, total)

    contexts = iter_contexts(
        load_documents(data), model.tokenizer, cfg.ctx_len, cfg.n_contexts, source=f"The corpus {data}"
    )
    position = 0  # contexts consumed from the iterator
    try:
        for start, end in pending:
            skipped = sum(1 for _ in itertools.islice(contexts, start - position))
            position += skipped
            if position < start:
                raise short_corpus_error(data, position, cfg)
            try:
                entry = record_shard(
                    model, spec, rec.out, start, end, itertools.islice(contexts, end - start), update
                )
            except CorpusExhausted as e:
                raise short_corpus_error(data, e.seen, cfg) from None
            position = end
            rec.add(entry)
    finally:
        bar.close()
    n_tok = rec.finish()
    secs = time.perf_counter() - t0
    return TraceResult.of(rec, n_tok, secs, pending_tokens)


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
