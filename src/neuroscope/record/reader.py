"""Read recorded activations: manifest checks, shard verification, a streaming shuffled batch iterator."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from jaxtyping import Float

from neuroscope.errors import CorruptDataError, InvalidConfigError, ResourceNotFoundError
from neuroscope.record.writer import MANIFEST, file_sha256, footer_rows


@dataclass(frozen=True)
class Batch:
    acts: Float[torch.Tensor, "n d"]
    token_id: torch.Tensor
    doc_id: torch.Tensor
    pos: torch.Tensor


class ActivationStore:
    """A recorded folder. Opening it reads the manifest; ``verify()`` checks every shard's footer
    (and, with ``checksums=True``, its SHA-256) and names the first bad shard."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.exists():
            raise ResourceNotFoundError(
                f"No {MANIFEST} in {self.path}: record activations there first with `neuroscope trace ... --out {self.path}`."
            )
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise CorruptDataError(f"Manifest {mpath} is not valid JSON: {e}") from e
        self.shards: list[dict[str, Any]] = self.manifest.get("shards", [])
        self._files: dict[str, pq.ParquetFile] = {}

    # --- metadata --------------------------------------------------------------------------------------
    @property
    def hooks(self) -> list[str]:
        return list(self.manifest["hooks"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest.get("tokens", 0))

    @property
    def n_usable_tokens(self) -> int:
        """Rows that are not special tokens (what ``iter_batches`` yields by default). From the manifest, or
        counted from the ``token_id`` columns for recordings made before the manifest carried it."""
        if "n_usable_tokens" in self.manifest:
            return int(self.manifest["n_usable_tokens"])
        special = np.array(self.special_token_ids, dtype=np.int64)
        n = 0
        for s in self.shards:
            ids = self._read(s["file"], None, ["token_id"]).column("token_id").to_numpy()
            n += int((~np.isin(ids, special)).sum())
        return n

    @property
    def dtype(self) -> str:
        return str(self.manifest.get("dtype", "float32"))

    @property
    def model_name(self) -> str:
        return str(self.manifest.get("model", ""))

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def special_token_ids(self) -> list[int]:
        return list(self.manifest.get("special_token_ids", []))

    def d(self, hook: str | None = None) -> int:
        return int(self.manifest["columns"][self.hook(hook)]["d"])

    def hook(self, hook: str | None = None) -> str:
        hooks = self.hooks
        if hook is None:
            if len(hooks) != 1:
                raise InvalidConfigError(
                    f"{self.path} holds several hooks ({', '.join(hooks)}); pick one with --hook"
                )
            return hooks[0]
        if hook not in hooks:
            raise InvalidConfigError(f"{self.path} has no hook {hook!r}; it holds {', '.join(hooks)}")
        return hook

    # --- verification ----------------------------------------------------------------------------------
    def verify(self, checksums: bool = False) -> int:
        """Check every listed shard; return the total row count."""
        total = 0
        for s in self.shards:
            p = self.path / s["file"]
            if not p.exists():
                raise CorruptDataError(f"Shard {p} is listed in the manifest but missing.")
            rows = footer_rows(p)
            if rows != s["rows"]:
                raise CorruptDataError(f"Shard {p} has {rows} rows but the manifest says {s['rows']}.")
            if checksums and file_sha256(p) != s["sha256"]:
                raise CorruptDataError(f"Shard {p} does not match its checksum in the manifest.")
            total += rows
        return total

    def _file(self, name: str) -> pq.ParquetFile:
        if name not in self._files:
            p = self.path / name
            if not p.exists():
                raise CorruptDataError(f"Shard {p} is listed in the manifest but missing.")
            try:
                self._files[name] = pq.ParquetFile(p)
            except (OSError, pa.ArrowException) as e:
                raise CorruptDataError(f"Shard {p} is corrupt (cannot open it as Parquet: {e}).") from e
        return self._files[name]

    def _read(self, name: str, row_group: int | None, columns: list[str]) -> pa.Table:
        f = self._file(name)
        try:
            if row_group is None:
                return f.read(columns=columns)
            return f.read_row_group(row_group, columns=columns)
        except (OSError, pa.ArrowException) as e:
            raise CorruptDataError(f"Shard {self.path / name} is corrupt (reading it failed: {e}).") from e

    # --- reading -----------------------------------------------------------------------------------------
    @staticmethod
    def _to_batch(table: pa.Table, hook: str, d: int) -> Batch:
        col = table.column(hook).combine_chunks()
        acts = col.values.to_numpy(zero_copy_only=False).reshape(-1, d)
        return Batch(
            torch.from_numpy(np.array(acts, dtype=np.float32)),
            torch.from_numpy(table.column("token_id").to_numpy().astype(np.int64)),
            torch.from_numpy(table.column("doc_id").to_numpy().astype(np.int64)),
            torch.from_numpy(table.column("pos").to_numpy().astype(np.int64)),
        )

    def read_all(self, hook: str | None = None, max_tokens: int | None = None) -> Batch:
        """Everything (or the first ``max_tokens`` rows) in recording order; for small stores and tests."""
        name = self.hook(hook)
        parts, n = [], 0
        for s in self.shards:
            parts.append(
                self._to_batch(
                    self._read(s["file"], None, ["doc_id", "pos", "token_id", name]), name, self.d(name)
                )
            )
            n += parts[-1].acts.shape[0]
            if max_tokens is not None and n >= max_tokens:
                break
        if not parts:
            raise CorruptDataError(f"{self.path} lists no shards.")
        cat = Batch(
            *(torch.cat([getattr(p, f) for p in parts]) for f in ("acts", "token_id", "doc_id", "pos"))
        )
        if max_tokens is not None:
            cat = Batch(
                cat.acts[:max_tokens],
                cat.token_id[:max_tokens],
                cat.doc_id[:max_tokens],
                cat.pos[:max_tokens],
            )
        return cat

    def row_groups(self) -> list[tuple[str, int]]:
        return [(s["file"], g) for s in self.shards for g in range(self._file(s["file"]).num_row_groups)]

    def _kept(self, table: pa.Table, special: np.ndarray) -> int:
        ids = table.column("token_id").to_numpy()
        return int((~np.isin(ids, special)).sum()) if special.size else len(ids)

    def partition(
        self, rank: int, world: int, exclude_special: bool = True
    ) -> list[tuple[str, int, int, int | None]]:
        """Rank ``rank`` of ``world``'s share of the store: ``(shard, row group, lo, hi)``, rows ``lo:hi`` of
        the group's rows left after dropping special tokens (``hi`` None: to the end). The kept rows, in
        recording order, are cut into ``world`` contiguous runs whose sizes differ by at most one, so every
        token belongs to exactly one rank, and each rank reads only the shards its run touches (per-group
        counts are read only in the shards where a run begins or ends)."""
        if not 0 <= rank < world:
            raise InvalidConfigError(f"rank must be in 0..{world - 1}, got {rank}")
        special = np.array(self.special_token_ids if exclude_special else [], dtype=np.int64)
        sizes = []
        for s in self.shards:
            if exclude_special and "special_rows" not in s:  # recorded before the manifest counted them
                tokens = self._read(s["file"], None, ["token_id"])
                sizes.append(self._kept(tokens, special))
            else:
                sizes.append(int(s["rows"]) - (int(s.get("special_rows", 0)) if exclude_special else 0))
        total = sum(sizes)
        lo_r, hi_r = total * rank // world, total * (rank + 1) // world
        out: list[tuple[str, int, int, int | None]] = []
        pos = 0
        for s, n in zip(self.shards, sizes, strict=True):
            name, begin, end = s["file"], pos, pos + n
            pos = end
            if end <= lo_r or begin >= hi_r:
                continue
            groups = range(self._file(name).num_row_groups)
            if lo_r <= begin and end <= hi_r:
                out += [(name, g, 0, None) for g in groups]
                continue
            g_pos = begin
            for g in groups:
                k = self._kept(self._read(name, g, ["token_id"]), special)
                a, b = max(g_pos, lo_r), min(g_pos + k, hi_r)
                if a < b:
                    out.append((name, g, a - g_pos, b - g_pos))
                g_pos += k
        return out

    def iter_batches(
        self,
        batch_size: int,
        hook: str | None = None,
        shuffle: bool = True,
        seed: int = 0,
        buffer_tokens: int = 131_072,
        exclude_special: bool = True,
        drop_last: bool = False,
        part: tuple[int, int] | None = None,
    ) -> Iterator[Batch]:
        """One pass over the store in batches. With ``shuffle``, row groups from all shards are visited in a
        seeded random order and mixed in a buffer of ``buffer_tokens`` rows, so memory stays bounded by the
        buffer whatever the store's size. Special tokens (BOS/EOS/padding) are dropped unless asked for.
        ``part=(rank, world)`` reads only that rank's share (:meth:`partition`)."""
        name = self.hook(hook)
        d = self.d(name)
        rng = np.random.default_rng(seed)
        groups: list[tuple[str, int, int, int | None]] = (
            [(f, g, 0, None) for f, g in self.row_groups()]
            if part is None
            else self.partition(*part, exclude_special=exclude_special)
        )
        if shuffle:
            groups = [groups[i] for i in rng.permutation(len(groups))]
        special = torch.tensor(self.special_token_ids, dtype=torch.long)
        cols = ["doc_id", "pos", "token_id", name]
        buf: list[Batch] = []
        buffered = 0

        def drain(final: bool) -> Iterator[Batch]:
            nonlocal buf, buffered
            cat = Batch(
                *(torch.cat([getattr(p, f) for p in buf]) for f in ("acts", "token_id", "doc_id", "pos"))
            )
            if shuffle:
                perm = torch.from_numpy(rng.permutation(cat.acts.shape[0]))
                cat = Batch(cat.acts[perm], cat.token_id[perm], cat.doc_id[perm], cat.pos[perm])
            n = cat.acts.shape[0]
            # keep half the buffer back while streaming so consecutive row groups mix across drains
            keep = 0 if final else (n // 2 if shuffle else n % batch_size)
            stop = ((n - keep) // batch_size) * batch_size
            if final and not drop_last:
                stop = n
            for i in range(0, stop, batch_size):
                sl = slice(i, min(i + batch_size, stop))
                yield Batch(cat.acts[sl], cat.token_id[sl], cat.doc_id[sl], cat.pos[sl])
            rest = Batch(cat.acts[stop:], cat.token_id[stop:], cat.doc_id[stop:], cat.pos[stop:])
            buf, buffered = ([rest], rest.acts.shape[0]) if rest.acts.shape[0] else ([], 0)

        for shard, g, lo, hi in groups:
            b = self._to_batch(self._read(shard, g, cols), name, d)
            if exclude_special and special.numel():
                keep = ~torch.isin(b.token_id, special)
                b = Batch(b.acts[keep], b.token_id[keep], b.doc_id[keep], b.pos[keep])
            if lo or hi is not None:
                b = Batch(b.acts[lo:hi], b.token_id[lo:hi], b.doc_id[lo:hi], b.pos[lo:hi])
            buf.append(b)
            buffered += b.acts.shape[0]
            if buffered >= buffer_tokens:
                yield from drain(final=False)
        if buffered:
            yield from drain(final=True)

    def sample(
        self, n: int, hook: str | None = None, seed: int = 0, exclude_special: bool = True
    ) -> Float[torch.Tensor, "n d"]:
        """Up to ``n`` shuffled rows (for initialisation and normalisation statistics)."""
        out, got = [], 0
        for b in self.iter_batches(
            min(n, 8192),
            hook,
            shuffle=True,
            seed=seed,
            buffer_tokens=max(n, 8192),
            exclude_special=exclude_special,
        ):
            out.append(b.acts)
            got += b.acts.shape[0]
            if got >= n:
                break
        if not out:
            raise CorruptDataError(f"{self.path} has no usable rows.")
        return torch.cat(out)[:n]
