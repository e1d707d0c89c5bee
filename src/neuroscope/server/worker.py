"""The model worker: the one owner of the model.

Every forward runs on a single thread, so requests from many clients are serialised without locks in the
model, and torch keeps all cores for each forward. The plain run of recent prompts (a
:class:`~neuroscope.analysis.run.Run`: the residual stream and attention patterns, extended by the views that
need more) is cached; an intervened run patches the cached ``blocks.L.hook_resid_pre`` in and skips the layers
below the first intervened layer ``L``. Every number a view shows comes from ``neuroscope.analysis`` called on
those runs; this module only schedules, caches and serialises.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from neuroscope.analysis import attention, geometry, lens, predictions, residual
from neuroscope.analysis.attribution import gradient_x_input
from neuroscope.analysis.run import Run
from neuroscope.errors import InvalidConfigError
from neuroscope.server import compute
from neuroscope.server.compute import Spec, SteeringVectorEntry

T = TypeVar("T")
IDLE_S = 0.5  # how long the queue must stay empty before work that can wait runs (``when_idle``)


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


# How long a view (priority 1) lets later live clicks (priority 0) go first: long enough that a click is
# answered before a graph is built, short enough that no view waits behind an endless stream of clicks.
VIEW_HANDICAP_S = 1.0


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
        # ordered by deadline: submission time plus ``priority`` handicaps (see ``call``)
        self._queue: queue.PriorityQueue[tuple[float, int, Any]] = queue.PriorityQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._seq = 0
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._lens: OrderedDict[str, lens.LensResult] = OrderedDict()
        self.vectors: dict[str, SteeringVectorEntry] = {}
        self._classes: list[dict[str, Any]] | None = None
        self.torch_threads = torch_threads
        self.max_batch = max_batch
        self.stats = {"forwards": 0, "cache_hits": 0, "cache_misses": 0, "batched_rows": 0}
        self._idle: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        if vectors_dir:
            self.load_vectors(Path(vectors_dir))

    # --- scheduling -------------------------------------------------------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any, priority: int = 1, **kwargs: Any) -> Timed:
        """Run ``fn(*args)`` on the model thread; returns its value with queue and compute times.

        Lower ``priority`` runs first: live next-token requests (0) overtake heavier views (1) in the queue,
        but only those submitted less than ``VIEW_HANDICAP_S`` seconds after the view: the queue is ordered by
        submission time plus ``priority`` handicaps, so a stream of clicks from many clients cannot starve
        a view for minutes (the one-hour soak saw feature details wait 2 minutes under strict priority).
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

    def when_idle(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the model thread once no request has waited for ``IDLE_S``: work that may
        wait (attaching a prepared edit's adapter) never delays a click. Errors are logged, not raised."""
        with self._lock:
            self._idle.append((fn, args))
        self._submit(99, lambda: None)  # wakes the thread (and starts it) so that it starts counting

    def _run_idle(self) -> None:
        fn, args = self._idle.popleft()
        try:
            with torch.inference_mode():
                fn(*args)
        except Exception:  # nothing awaits it; the work it stood for stays undone
            logging.getLogger(__name__).exception("idle task %s failed", getattr(fn, "__name__", fn))

    def _submit(self, priority: int, job: Callable[[], None] | _NextTokenJob) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the model worker is closed")
            self._seq += 1
            self._queue.put((time.monotonic() + priority * VIEW_HANDICAP_S, self._seq, job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="neuroscope-model", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        if self.torch_threads:  # set on this thread: OpenMP's thread count is per calling thread
            torch.set_num_threads(self.torch_threads)
        while True:
            try:
                _, _, job = self._queue.get(timeout=IDLE_S if self._idle else None)
            except queue.Empty:
                self._run_idle()
                continue
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
            self._queue.put((float("inf"), 1 << 62, None))
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
        pending: list[tuple[int, Run, bool, int]] = []
        with torch.inference_mode():
            for i, job in enumerate(batch):
                try:
                    run, cached = self.plain(job.prompt)
                    _, first = compute.build_interventions(self.model, job.spec, self.vectors)
                    if first is None:
                        outcome[i] = (run, cached, run.next_logits, None, 0)
                    else:
                        pending.append((i, run, cached, first))
                except Exception as e:  # this row's own error; the others still run
                    outcome[i] = e
            try:
                if len(pending) == 1:
                    i, run, cached, first = pending[0]
                    ivs, _ = compute.build_interventions(self.model, batch[i].spec, self.vectors)
                    new = compute.rerun(self.model, run, ivs, first)
                    outcome[i] = (run, cached, new.next_logits, first, self.model.cfg.n_layers - first)
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
                result = self._next_token_result(run, logits, job.top_k)
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

    def plain(self, prompt: str) -> tuple[Run, bool]:
        """The cached plain run of ``prompt`` (computed on a miss); the bool says whether it was cached."""
        if prompt in self._runs:
            self._runs.move_to_end(prompt)
            self.stats["cache_hits"] += 1
            return self._runs[prompt], True
        if len(prompt) > self.max_prompt_chars:
            raise compute.PromptLimitError("chars", len(prompt), self.max_prompt_chars)
        compute.check_ids(self.model.to_tokens(prompt)[0], self.max_prompt_tokens)
        run = compute.plain_run(self.model, prompt)
        self.stats["forwards"] += 1
        self.stats["cache_misses"] += 1
        self._runs[prompt] = run
        while len(self._runs) > self.cache_size:
            old, _ = self._runs.popitem(last=False)
            self._lens.pop(old, None)
        return run, False

    def view_run(self, prompt: str, spec: Spec, names: list[str]) -> tuple[Run, Run, Timed]:
        """(the plain run, the run a view analyses, the cache facts). The view's run is the cached plain run
        (extended to ``names``) or, with interventions, the intervened run recomputed from the first
        intervened layer."""
        run, cached = self.plain(prompt)
        ivs, first = compute.build_interventions(self.model, spec, self.vectors)
        if first is None:
            return run, run.ensure(names), Timed(None, 0, 0, cached)
        self.stats["forwards"] += 1
        new = compute.rerun(self.model, run, ivs, first, names)
        return run, new, Timed(None, 0, 0, cached, first, self.model.cfg.n_layers - first)

    def _next_token_result(self, run: Run, logits: Any, top_k: int) -> dict[str, Any]:
        assert run.next_logits is not None  # a plain run always keeps them
        return {
            "tokens": run.str_tokens,
            "token_ids": run.ids[0].tolist(),
            **predictions.compare_next_token(self.model, run.next_logits, logits, top_k).to_dict(),
        }

    def next_token(self, prompt: str, spec: Spec, top_k: int) -> Timed:
        plain, view, timed = self.view_run(prompt, spec, [])
        timed.value = self._next_token_result(plain, view.next_logits, top_k)
        return timed

    def attention_grid(self, prompt: str, size: int = 24) -> Timed:
        run, cached = self.plain(prompt)
        thumbs = compute.thumbnails(self._patterns(run), size)
        n_l, n_h, s, _ = thumbs.shape
        result = {
            "tokens": run.str_tokens,
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

    def _patterns(self, run: Run) -> torch.Tensor:
        n = self.model.cfg.n_layers
        return torch.stack([run.cache["pattern", li][0] for li in range(n)]).float()

    def badges(self, run: Run) -> list[dict[str, Any]]:
        """Head types from the analysis library's labels on seeded random repeated tokens (computed once);
        where they label no head, the same scores and thresholds on this prompt's own patterns."""
        if self._classes is None:
            c = attention.classify_heads(self.model)
            self._classes = _badges(attention.label_heads(c.scores, c.thresholds), "classifier")
        if self._classes:
            return self._classes
        return _badges(attention.label_heads(attention.head_scores(run)), "prompt")

    def head(self, prompt: str, layer: int, head: int) -> dict[str, Any]:
        self.model.check_head(layer, head)
        run, _ = self.plain(prompt)
        pattern = [[round(v, 5) for v in row] for row in run.cache["pattern", layer][0, head].tolist()]
        return {"tokens": run.str_tokens, "layer": layer, "head": head, "pattern": pattern}

    def lens(self, prompt: str, spec: Spec) -> Timed:
        _, view, timed = self.view_run(prompt, spec, self.model.resid_stream_names())
        if timed.first_layer is None and prompt in self._lens:
            r = self._lens[prompt]
        else:
            r = lens.logit_lens(view, k=1, keep_probs=False)
            if timed.first_layer is None:
                self._lens[prompt] = r
        timed.value = {
            "tokens": view.str_tokens,
            "layers": self._row_labels(),
            "top_tokens": [[p[0] for p in row] for row in r.top_tokens],
            "top_ids": [[p[0] for p in row] for row in r.top_ids],
            "probs": [[round(p[0], 5) for p in row] for row in r.top_probs],
        }
        return timed

    def _row_labels(self) -> list[str]:
        """The views' names for the residual stream's rows: the embedding, then the state after each layer."""
        return ["embed"] + [f"L{li}" for li in range(self.model.cfg.n_layers)]

    def residual(self, prompt: str, spec: Spec) -> Timed:
        plain, view, timed = self.view_run(prompt, spec, self.model.resid_stream_names())
        base = geometry.trajectory_pca(plain, n_components=3)
        base_norms = residual.residual_norms(plain).norms
        changed = timed.first_layer is not None
        pca = geometry.trajectory_pca(view, n_components=3, basis=base.basis) if changed else base
        labels = self._row_labels()
        timed.value = {
            "tokens": view.str_tokens,
            "labels": labels,
            "norms": residual.residual_norms(view).norms if changed else base_norms,
            "baseline_norms": base_norms if changed else None,
            "pca": {
                "labels": labels,
                "points": pca.coords,
                "baseline_points": base.coords if changed else None,
                "explained": base.explained_variance_ratio,
            },
        }
        return timed

    def attribution(self, prompt: str, spec: Spec, target: str | None, all_neurons: bool = False) -> Timed:
        _, view, timed = self.view_run(prompt, spec, residual.dla_names(self.model))
        dla = residual.direct_logit_attribution(view, answer=target)
        grads = gradient_x_input(view, answer=dla.answer_id)
        pos = dla.position
        # an ablated MLP writes nothing: its neurons' would-be effects are not listed
        top = dla.top_neurons(24, skip_layers=spec.mlps)
        by_label = dict(zip(dla.labels, dla.contributions, strict=True))
        n = self.model.cfg.n_layers
        components: list[tuple[str, float]] = [
            (lab, by_label[lab]) for lab in ("embed", "pos_embed") if lab in by_label
        ]
        components += [
            (f"{kind}{li}", terms[li])
            for li in range(n)
            for kind, terms in (("attn", dla.attn), ("mlp", dla.mlp))
        ]
        components += [(lab, by_label[lab]) for lab in ("ln_final.bias", "b_U") if lab in by_label]
        timed.value = {
            "target": dla.answer,
            "target_id": dla.answer_id,
            "actual": dla.actual,
            "components": [{"label": k, "value": v} for k, v in components],
            "heads": dla.head_map,
            "attn_bias": dla.attn_bias,
            "mlp_bias": dla.mlp_bias,
            "neurons": [
                {
                    "layer": li,
                    "neuron": nn,
                    "value": v,
                    "activation": float(view.cache["post", li][0, pos, nn]),
                }
                for li, nn, v in top
            ],
            "neuron_map": dla.neuron_map if all_neurons else None,
            "token_scores": grads.attributions,
            "tokens": view.str_tokens,
        }
        return timed

    def generate(self, prompt: str, spec: Spec, max_new_tokens: int, temperature: float, seed: int) -> Timed:
        if len(prompt) > self.max_prompt_chars:
            raise compute.PromptLimitError("chars", len(prompt), self.max_prompt_chars)
        compute.check_ids(self.model.to_tokens(prompt)[0], self.max_prompt_tokens)
        ivs, first = compute.build_interventions(self.model, spec, self.vectors)
        kw = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
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
        """Every vector of the store folder (``neuroscope.export.vectors``: ``NAME.safetensors``)."""
        from neuroscope.export.vectors import read_vector_store

        for v in read_vector_store(folder).values():
            self.add_vector(v.name, v.layer, v.vector, v.source)

    def info(self) -> dict[str, Any]:
        return {
            "runs_cached": len(self._runs),
            "cache_bytes": sum(r.cache.nbytes for r in self._runs.values()),
            **self.stats,
        }


def _badges(labels: list[attention.HeadLabel], source: str) -> list[dict[str, Any]]:
    return [
        {
            "layer": b.layer,
            "head": b.head,
            "kind": b.kind.replace("_", "-"),
            "score": b.score,
            "source": source,
        }
        for b in labels
    ]


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
