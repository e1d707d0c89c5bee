"""Record activations on a Ray cluster with Ray Data: the same shards and manifest as one process.

The driver never loads the model. One Ray task loads it to describe it (hook names and widths, special
tokens) and tokenizes the corpus once to find where each shard's contexts begin; the driver then opens the
output folder with :class:`~neuroscope.record.manifest.Recording` (settings checked, complete shards adopted)
and turns the shards still missing into a Ray Dataset of small descriptors (context range + corpus cursor).
``map_batches`` hands them, one per call, to a pool of :class:`ShardRecorder` actors (one model each, one GPU
each when the cluster has GPUs) that call :func:`~neuroscope.record.writer.record_shard`, the function the
single process calls. Each finished shard's manifest entry streams back to the driver, which lists it at once.

Resume is the single process's: shards are renamed into place only when whole and listed with their SHA-256,
so a killed worker (Ray restarts the actor and retries its shard) or a killed driver (run the same command
again) loses and duplicates nothing. Ray Data's own checkpointing is not used: it needs row ids that survive
every operator, and shard-level resume already gives exactly-once.

Ray is imported only when a distributed recording is asked for.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuroscope.errors import InvalidConfigError, RayUnavailableError
from neuroscope.record.datasets import context_cursors, iter_contexts, load_documents, resolve_data
from neuroscope.record.manifest import ModelHeader, Recording
from neuroscope.record.writer import (
    ShardSpec,
    TraceConfig,
    TraceResult,
    _progress,
    model_header,
    record_shard,
    resolve_hooks,
    short_corpus_error,
)

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

ENTRY_KEYS = ("file", "start", "end", "rows", "special_rows", "sha256", "bytes")
MiB = 1 << 20


@dataclass(frozen=True)
class ModelLoad:
    """How every worker loads its copy of the model (arguments of :func:`~neuroscope.load_model`)."""

    spec: str
    device: str | None = None
    dtype: str | None = None
    quantize: str | None = None

    def load(self) -> HookedModel:
        from neuroscope.models.loading import load_model

        return load_model(self.spec, device=self.device, dtype=self.dtype, quantize=self.quantize)


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide. ``address``: ``None`` starts a local Ray instance sized for a small machine
    (``workers`` × ``cpus_per_worker`` CPUs, an object store of ``object_store_mb``; only shard descriptors
    and manifest entries travel through it), ``"auto"`` joins the cluster this machine belongs to, and
    ``HOST:PORT`` (or ``ray://HOST:10001``) joins that one. ``gpus_per_worker``: ``None`` gives each worker
    one GPU when the cluster has any, else none. ``threads_per_worker``: torch threads in each worker
    (default: its CPUs)."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    threads_per_worker: int | None = None
    object_store_mb: int = 256

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InvalidConfigError(f"workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise InvalidConfigError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise InvalidConfigError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.object_store_mb < 64:
            raise InvalidConfigError(f"object_store_mb must be >= 64, got {self.object_store_mb}")

    @property
    def threads(self) -> int:
        return self.threads_per_worker or max(1, int(self.cpus_per_worker))


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def describe(
    load: ModelLoad, cfg: TraceConfig, layers: tuple[int, ...], data: str, threads: int
) -> tuple[TraceConfig, ModelHeader, dict[int, tuple[int, int]], int]:
    """Run once, as a Ray task: resolve the hook names, describe the model, find every shard's cursor."""
    _set_threads(threads)
    model = load.load()
    cfg = dataclasses.replace(cfg, hooks=resolve_hooks(model, layers, cfg.hooks))
    header = model_header(model, cfg.hooks)
    starts = [s for s, _ in cfg.shard_ranges()]
    cursors, available = context_cursors(
        load_documents(data), model.tokenizer, cfg.ctx_len, starts, cfg.n_contexts
    )
    return cfg, header, cursors, available


class ShardRecorder:
    """The Ray Data actor: one model, then one shard per call through the single process's
    :func:`record_shard`. A batch is a dict of numpy arrays (``start``, ``end``, ``doc``, ``offset``)."""

    def __init__(self, load: ModelLoad, spec: ShardSpec, out: str, data: str, threads: int):
        _set_threads(threads)
        self.model = load.load()
        self.spec, self.out, self.data = spec, Path(out), data

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        entries = []
        for start, end, doc, offset in zip(
            batch["start"], batch["end"], batch["doc"], batch["offset"], strict=True
        ):
            start, end = int(start), int(end)
            contexts = iter_contexts(
                load_documents(self.data),
                self.model.tokenizer,
                self.spec.ctx_len,
                end - start,
                skip=(int(doc), int(offset)),
            )
            # the temp file carries the worker's pid: a worker of a killed driver that Ray has not reaped
            # yet can never write into the file a new worker is writing
            entries.append(
                record_shard(self.model, self.spec, self.out, start, end, contexts, tag=f"{os.getpid()}")
            )
        return {k: np.array([e[k] for e in entries]) for k in ENTRY_KEYS}


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise RayUnavailableError(
            "Distributed recording needs Ray Data, which is not installed: pip install 'neuroscope[scale]' "
            f"(or 'ray[data]'). ({e})"
        ) from e
    return ray


def connect(rcfg: RayConfig) -> bool:
    """Join the cluster (or start a local one); True when this call started Ray and should stop it."""
    ray = _ray()
    if ray.is_initialized():
        return False
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NEUROSCOPE_CACHE")
    }
    runtime_env = {"env_vars": env} if env else None
    if rcfg.address is None:
        ray.init(
            num_cpus=max(1, int(rcfg.workers * rcfg.cpus_per_worker)),
            object_store_memory=rcfg.object_store_mb * MiB,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
        )
    else:  # a local instance inherits this environment; workers of another cluster are told it
        try:
            ray.init(address=rcfg.address, log_to_driver=False, runtime_env=runtime_env)
        except ConnectionError as e:
            raise RayUnavailableError(
                f"Cannot reach a Ray cluster at {rcfg.address!r} ({e}). Start one with `ray start --head` "
                "(then --address auto on that machine, or HOST:6379 elsewhere)."
            ) from e
    return True


def _gpus(ray: Any, rcfg: RayConfig) -> float:
    if rcfg.gpus_per_worker is not None:
        return rcfg.gpus_per_worker
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def record_ray(
    load: ModelLoad,
    cfg: TraceConfig,
    out: str | os.PathLike,
    rcfg: RayConfig | None = None,
    layers: tuple[int, ...] = (),
    progress: bool = True,
) -> TraceResult:
    """Record like :func:`~neuroscope.record.writer.record`, on Ray workers. ``cfg.hooks`` may be short
    names (``resid_post``) resolved against ``layers``, as on the command line. Paths are made absolute,
    since workers do not share the driver's working directory (on a cluster, ``out`` and the corpus must
    be on storage every node sees)."""
    rcfg = rcfg or RayConfig()
    t0 = time.perf_counter()
    ray = _ray()
    started = connect(rcfg)
    try:
        data = resolve_data(cfg.data, cfg.split).resolve()
        out_path = Path(out).resolve()
        cfg = dataclasses.replace(cfg, data=str(data))
        gpus = _gpus(ray, rcfg)
        task = ray.remote(describe).options(num_cpus=rcfg.cpus_per_worker, num_gpus=gpus, max_retries=3)
        cfg, header, cursors, available = ray.get(
            task.remote(load, cfg, tuple(layers), str(data), rcfg.threads)
        )
        if available < cfg.n_contexts:
            raise short_corpus_error(data, available, cfg)
        rec = Recording.open(header, cfg, out_path, data)
        spec = ShardSpec.of(cfg, header)
        pending = rec.pending()
        total = cfg.n_contexts * cfg.ctx_len
        pending_tokens = sum((e - s) * cfg.ctx_len for s, e in pending)
        bar = _progress(progress, total, total - pending_tokens)
        try:
            if pending:
                for row in _dataset(ray, load, spec, rec, pending, cursors, rcfg, gpus, progress).iter_rows():
                    entry = {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in ENTRY_KEYS}
                    entry["file"] = str(entry["file"])
                    rec.add(entry)
                    bar.update(entry["rows"])
        finally:
            bar.close()
        n_tok = rec.finish()
    finally:
        if started:
            ray.shutdown()
    secs = time.perf_counter() - t0
    return TraceResult.of(rec, n_tok, secs, pending_tokens)


def _dataset(
    ray: Any,
    load: ModelLoad,
    spec: ShardSpec,
    rec: Recording,
    pending: list[tuple[int, int]],
    cursors: dict[int, tuple[int, int]],
    rcfg: RayConfig,
    gpus: float,
    progress: bool,
) -> Any:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    items = [{"start": s, "end": e, "doc": cursors[s][0], "offset": cursors[s][1]} for s, e in pending]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    return ds.map_batches(
        ShardRecorder,
        fn_constructor_kwargs={
            "load": load,
            "spec": spec,
            "out": str(rec.out),
            "data": str(rec.data),
            "threads": rcfg.threads,
        },
        compute=ray.data.ActorPoolStrategy(size=min(rcfg.workers, len(items))),
        batch_size=1,
        batch_format="numpy",
        num_cpus=rcfg.cpus_per_worker,
        num_gpus=gpus,
        # Ray Data's actor pools restart a crashed actor and retry its shard (max_restarts=-1 by default,
        # kill -9 included); a shard is written whole or not at all, so a retry cannot duplicate rows
    )
