"""The model worker: the one owner of the model.

Every forward runs on a single thread, so requests from many clients are serialised without locks in the
model, and torch keeps all cores for each forward. The plain run of recent prompts (full residual stream,
attention patterns, last-position component outputs) is cached; an intervened run patches the cached
``blocks.L.hook_resid_pre`` in and skips the layers below the first intervened layer ``L``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from neuroscope.errors import CorruptDataError, InvalidConfigError
from neuroscope.server import compute
from neuroscope.server.compute import PlainRun, Spec, SteeringVectorEntry

T = TypeVar("T")


@dataclass
class Timed:
    value: Any
    queue_ms: float
    compute_ms: float
    cached_baseline: bool = False
    first_layer: int | None = None
    recomputed_layers: int = 0
    batch_size: int = 1

    def timings(self, total_ms: float = 0.0) -> dict[str, Any]:
        return {
            "queue_ms": round(self.queue_ms, 3),
            "compute_ms": round(self.compute_ms, 3),
            "total_ms": round(total_ms, 3),
            "cached_baseline": self.cached_baseline,
            "first_layer": self.first_layer,
            "recomputed_layers": self.recomputed_layers,
            "batch_size": self.batch_size,
        }


class ModelWorker:
    def __init__(
        self,
        model: Any,
        *,
        cache_size: int = 8,
        max_prompt_tokens: int = 128,
        max_prompt_chars: int = 4000,
        vectors_dir: str | None = None,
        torch_threads: int | None = None,
        max_batch: int = 16,
    ):
        self.model = model
        self.cache_size = cache_size
        self.max_prompt_tokens = min(max_prompt_tokens, model.cfg.n_ctx)
        self.max_prompt_chars = max_prompt_chars
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._seq = 0
        self._runs: OrderedDict[str, PlainRun] = OrderedDict()
        self._lens: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.vectors: dict[str, SteeringVectorEntry] = {}
        self._classes: list[dict[str, Any]] | None = None
        self.torch_threads = torch_threads
        self.max_batch = max_batch
        self.stats = {"forwards": 0, "cache_hits": 0, "cache_misses": 0, "batched_rows": 0}
        if vectors_dir:
            self.load_vectors(Path(vectors_dir))

    # --- scheduling -------------------------------------------------------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any, priority: int = 1, **kwargs: Any) -> Timed:
        """Run ``fn(*args)`` on the model thread; returns its value with queue and compute times.

        Lower ``priority`` runs first: live next-token requests (0) overtake heavier views (1) in the queue.
        """
        submitted = time.perf_counter()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Timed] = loop.create_future()

        def job() -> None:
            started = time.perf_counter()
            try:
                with torch.inference_mode():
                    value = fn(*args, **kwargs)
            except BaseException as e:  # handed to the awaiting request, which maps it to a reply
                loop.call_soon_threadsafe(_settle, future, None, e)
                return
            done = time.perf_counter()
            timed = value if isinstance(value, Timed) else Timed(value, 0, 0)
            timed.queue_ms, timed.compute_ms = (started - submitted) * 1e3, (done - started) * 1e3
            loop.call_soon_threadsafe(_settle, future, timed, None)

        self._submit(priority, job)
        return await future

    async def next_token_live(self, prompt: str, spec: Spec, top_k: int) -> Timed:
        """``next_token`` for live clients: queued at top priority, and run together with other clients'
        queued requests in one padded forward (up to ``max_batch`` rows)."""
        loop = asyncio.get_running_loop()
        job = _NextTokenJob(prompt, spec, top_k, loop, loop.create_future(), time.perf_counter())
        self._submit(0, job)
        return await job.future

    def _submit(self, priority: int, job: Callable[[], None] | _NextTokenJob) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the model worker is closed")
            self._seq += 1
            self._queue.put((priority, self._seq, job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="neuroscope-model", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        if self.torch_threads:  # set on this thread: OpenMP's thread count is per calling thread
            torch.set_num_threads(self.torch_threads)
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            if isinstance(job, _NextTokenJob):
                batch = [job]
                while len(batch) < self.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(item[2], _NextTokenJob):
                        self._queue.put(item)  # same priority and sequence number: it stays next in line
                        break
                    batch.append(item[2])
                self._run_batch(batch)
            else:
                job()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put((99, 1 << 62, None))
        if thread is not None:
            thread.join(timeout=30)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """For tests and benchmarks: call a worker method on the model thread and wait for it."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                with torch.inference_mode():
                    box["value"] = fn(*args)
            except BaseException as e:
                box["error"] = e
            done.set()

        self._submit(0, job)
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]

    # --- everything below runs on the model thread ------------------------------------------------------
    def _run_batch(self, batch: list[_NextTokenJob]) -> None:
        started = time.perf_counter()
        outcome: list[Any] = [None] * len(batch)
        pending: list[tuple[int, PlainRun, bool, int]] = []
        with torch.inference_mode():
            for i, job in enumerate(batch):
                try:
                    run, cached = self.plain(job.prompt)
                    _, first = compute.build_interventions(self.model, job.spec, self.vectors)
                    if first is None:
                        outcome[i] = (run, cached, run.logits, None, 0)
                    else:
                        pending.append((i, run, cached, first))
                except Exception as e:  # this row's own error; the others still run
                    outcome[i] = e
            try:
                if len(pending) == 1:
                    i, run, cached, first = pending[0]
                    ivs, _ = compute.build_interventions(self.model, batch[i].spec, self.vectors)
                    with compute.edit_context(self.model, batch[i].spec):
                        new = compute.rerun(self.model, run, ivs, first)
                    outcome[i] = (run, cached, new.logits, first, new.recomputed_layers)
                elif pending:
                    logits = compute.rerun_batch(
                        self.model,
                        [r for _, r, _, _ in pending],
                        [batch[i].spec for i, *_ in pending],
                        self.vectors,
                    )
                    start = min(f for *_, f in pending)
                    for (i, run, cached, first), lg in zip(pending, logits, strict=True):
                        outcome[i] = (run, cached, lg, first, self.model.cfg.n_layers - start)
                if pending:
                    self.stats["forwards"] += 1
                    self.stats["batched_rows"] += len(pending)
            except Exception as e:
                for i, *_ in pending:
                    outcome[i] = e
            done = time.perf_counter()
            for job, out in zip(batch, outcome, strict=True):
                if isinstance(out, BaseException):
                    job.settle(None, out)
                    continue
                run, cached, logits, first, layers = out
                result = {
                    "tokens": run.tokens,
                    "token_ids": run.ids.tolist(),
                    **compute.compare(self.model, run.logits, logits, job.top_k),
                }
                timed = Timed(
                    result, (started - job.submitted) * 1e3, (done - started) * 1e3, cached, first, layers
                )
                timed.batch_size = len(pending) if first is not None else 1
                job.settle(timed, None)

    def check_prompt(self, prompt: str) -> None:
        """The server's prompt limits, checked before a request is queued."""
        if len(prompt) > self.max_prompt_chars:
            raise compute.PromptLimitError("chars", len(prompt), self.max_prompt_chars)
        compute.check_ids(self.model.to_tokens(prompt)[0], self.max_prompt_tokens)

    def plain(self, prompt: str) -> tuple[PlainRun, bool]:
        """The cached plain run of ``prompt`` (computed on a miss); the bool says whether it was cached."""
        if prompt in self._runs:
            self._runs.move_to_end(prompt)
            self.stats["cache_hits"] += 1
            return self._runs[prompt], True
        if len(prompt) > self.max_prompt_chars:
            raise compute.PromptLimitError("chars", len(prompt), self.max_prompt_chars)
        ids = self.model.to_tokens(prompt)[0]
        compute.check_ids(ids, self.max_prompt_tokens)
        run = compute.plain_run(self.model, prompt, ids)
        self.stats["forwards"] += 1
        self.stats["cache_misses"] += 1
        self._runs[prompt] = run
        while len(self._runs) > self.cache_size:
            old, _ = self._runs.popitem(last=False)
            self._lens.pop(old, None)
        return run, False

    def _intervened(self, run: PlainRun, spec: Spec, full: bool) -> tuple[compute.Rerun | None, int | None]:
        ivs, first = compute.build_interventions(self.model, spec, self.vectors)
        if first is None:
            return None, None
        self.stats["forwards"] += 1
        with compute.edit_context(self.model, spec):
            return compute.rerun(self.model, run, ivs, first, full=full), first

    def next_token(self, prompt: str, spec: Spec, top_k: int) -> Timed:
        run, cached = self.plain(prompt)
        new, first = self._intervened(run, spec, full=False)
        logits = run.logits if new is None else new.logits
        result = {
            "tokens": run.tokens,
            "token_ids": run.ids.tolist(),
            **compute.compare(self.model, run.logits, logits, top_k),
        }
        return Timed(result, 0, 0, cached, first, 0 if new is None else new.recomputed_layers)

    def attention_grid(self, prompt: str, size: int = 24) -> Timed:
        run, cached = self.plain(prompt)
        assert run.patterns is not None
        thumbs = compute.thumbnails(run.patterns, size)
        n_l, n_h, s, _ = thumbs.shape
        result = {
            "tokens": run.tokens,
            "n_layers": n_l,
            "n_heads": n_h,
            "size": s,
            "thumbs": [
                [[round(v, 4) for v in thumbs[li, h].flatten().tolist()] for h in range(n_h)]
                for li in range(n_l)
            ],
            "badges": self.badges(run),
        }
        return Timed(result, 0, 0, cached)

    def badges(self, run: PlainRun) -> list[dict[str, Any]]:
        """Head types from the analysis library's classifier (seeded random repeated tokens, computed once);
        without it, simple scores on this prompt's own patterns."""
        if self._classes is None:
            try:
                from neuroscope.analysis.attention import classify_heads
            except ImportError:
                self._classes = []
            else:
                labels = classify_heads(self.model).labels
                best: dict[tuple[int, int], dict[str, Any]] = {}
                for kind, hits in labels.items():
                    for layer, head, score in hits:
                        if (layer, head) not in best or score > best[(layer, head)]["score"]:
                            best[(layer, head)] = {
                                "layer": layer,
                                "head": head,
                                "kind": kind.replace("_", "-"),
                                "score": score,
                                "source": "classifier",
                            }
                self._classes = sorted(best.values(), key=lambda b: (b["layer"], b["head"]))
        if self._classes:
            return self._classes
        assert run.patterns is not None
        return [{**b, "source": "prompt"} for b in compute.head_badges(run.patterns)]

    def head(self, prompt: str, layer: int, head: int) -> dict[str, Any]:
        self.model.check_head(layer, head)
        run, _ = self.plain(prompt)
        assert run.patterns is not None
        pattern = [[round(v, 5) for v in row] for row in run.patterns[layer, head].tolist()]
        return {"tokens": run.tokens, "layer": layer, "head": head, "pattern": pattern}

    def lens(self, prompt: str, spec: Spec) -> Timed:
        run, cached = self.plain(prompt)
        new, first = self._intervened(run, spec, full=True)
        if new is None and prompt in self._lens:
            ids, probs = self._lens[prompt]
        else:
            resid = run.resid if new is None or new.resid is None else new.resid
            ids, probs = compute.logit_lens(self.model, resid)
            if new is None:
                self._lens[prompt] = (ids, probs)
        n = self.model.cfg.n_layers
        tok = self.model.tokenizer
        vocab = {i: tok.decode([i]) for i in set(ids.flatten().tolist())}
        result = {
            "tokens": run.tokens,
            "layers": ["embed"] + [f"L{li}" for li in range(n)],
            "top_tokens": [[vocab[i] for i in row] for row in ids.tolist()],
            "top_ids": ids.tolist(),
            "probs": [[round(p, 5) for p in row] for row in probs.tolist()],
        }
        return Timed(result, 0, 0, cached, first, 0 if new is None else new.recomputed_layers)

    def residual(self, prompt: str, spec: Spec) -> Timed:
        run, cached = self.plain(prompt)
        new, first = self._intervened(run, spec, full=True)
        resid = run.resid if new is None else new.resid
        assert resid is not None
        mean, basis, explained = compute.pca_basis(run.resid[:, -1])
        project = lambda r: ((r[:, -1] - mean) @ basis.T).tolist()  # noqa: E731
        n = self.model.cfg.n_layers
        labels = ["embed"] + [f"L{li}" for li in range(n)]
        result = {
            "tokens": run.tokens,
            "labels": labels,
            "norms": resid.norm(dim=-1).tolist(),
            "baseline_norms": None if new is None else run.resid.norm(dim=-1).tolist(),
            "pca": {
                "labels": labels,
                "points": project(resid),
                "baseline_points": None if new is None else project(run.resid),
                "explained": explained,
            },
        }
        return Timed(result, 0, 0, cached, first, 0 if new is None else new.recomputed_layers)

    def attribution(self, prompt: str, spec: Spec, target: str | None) -> Timed:
        run, cached = self.plain(prompt)
        new, first = self._intervened(run, spec, full=True)
        src: Any = run if new is None else new
        logits = run.logits if new is None else new.logits
        tid = compute.resolve_target(self.model, target, logits)
        resid = src.resid
        comps, heads = compute.direct_logit_attribution(
            self.model, resid[0, -1], resid[-1, -1], src.attn_out, src.mlp_out, src.z, tid
        )
        neurons = compute.neuron_attribution(self.model, resid[-1, -1], src.post, tid, k=24)
        ivs, _ = compute.build_interventions(self.model, spec, self.vectors)
        with compute.edit_context(self.model, spec):
            grads = compute.token_gradients(self.model, run.ids, ivs, tid)
        result = {
            "target": self.model.tokenizer.decode([tid]),
            "target_id": tid,
            "components": [{"label": k, "value": v} for k, v in comps],
            "heads": heads,
            "neurons": neurons,
            "token_scores": grads,
            "tokens": run.tokens,
        }
        return Timed(result, 0, 0, cached, first, 0 if new is None else new.recomputed_layers)

    def generate(self, prompt: str, spec: Spec, max_new_tokens: int, temperature: float, seed: int) -> Timed:
        if len(prompt) > self.max_prompt_chars:
            raise compute.PromptLimitError("chars", len(prompt), self.max_prompt_chars)
        compute.check_ids(self.model.to_tokens(prompt)[0], self.max_prompt_tokens)
        ivs, first = compute.build_interventions(self.model, spec, self.vectors)
        kw = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
        with compute.edit_context(self.model, spec):
            text = self.model.generate(prompt, interventions=ivs, **kw)
        baseline = None if first is None else self.model.generate(prompt, **kw)
        return Timed({"text": text, "baseline": baseline}, 0, 0, False, first, 0)

    # --- steering vectors -------------------------------------------------------------------------------
    def add_vector(self, name: str, layer: int, vector: torch.Tensor, source: str) -> SteeringVectorEntry:
        self.model.check_layer(layer)
        if vector.ndim != 1 or vector.shape[0] != self.model.cfg.d_model:
            raise InvalidConfigError(
                f"Steering vector {name!r} must have shape ({self.model.cfg.d_model},), got {tuple(vector.shape)}."
            )
        entry = SteeringVectorEntry(name, layer, vector.detach().float().cpu(), source)
        self.vectors[name] = entry
        return entry

    def contrast_vector(
        self, name: str, positive: list[str], negative: list[str], layer: int
    ) -> SteeringVectorEntry:
        """Mean last-token ``blocks.layer.hook_resid_pre`` of ``positive`` minus that of ``negative``."""
        from neuroscope.analysis.steering import steering_vector

        self.model.check_layer(layer)
        for p in [*positive, *negative]:
            compute.check_ids(self.model.to_tokens(p)[0], self.max_prompt_tokens)
        vector = steering_vector(self.model, positive, negative, layer)
        return self.add_vector(name, layer, vector, "contrast")

    def load_vectors(self, folder: Path) -> None:
        """``*.pt`` holding a tensor or ``{"vector": tensor, "layer": int}``; a bare tensor needs ``name.L{layer}.pt``."""
        for path in sorted(folder.glob("*.pt")):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                vec, layer = obj.get("vector"), obj.get("layer")
            else:
                stem_layer = path.stem.rsplit(".L", 1)
                vec, layer = (
                    obj,
                    int(stem_layer[1]) if len(stem_layer) == 2 and stem_layer[1].isdigit() else None,
                )
            if not isinstance(vec, torch.Tensor) or layer is None:
                raise CorruptDataError(
                    f"{path}: expected a tensor with a layer (a dict with 'vector' and 'layer', or NAME.L<layer>.pt)."
                )
            self.add_vector(path.stem.split(".L")[0], int(layer), vec, str(path))

    def info(self) -> dict[str, Any]:
        return {
            "runs_cached": len(self._runs),
            "cache_bytes": sum(r.nbytes for r in self._runs.values()),
            **self.stats,
        }


def _settle(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


@dataclass
class _NextTokenJob:
    """A live next-token request waiting on the model thread (batched with its queued neighbours)."""

    prompt: str
    spec: Spec
    top_k: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    submitted: float

    def settle(self, value: Any, error: BaseException | None) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, value, error)

    def __lt__(self, other: object) -> bool:  # never compared: (priority, seq) are unique
        return False
