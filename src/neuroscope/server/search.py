"""An adversarial search inside the server: one at a time, as short low-priority jobs on the model worker.

A search step takes seconds on a CPU; run as one job it would hold the model while live clicks wait. So each
step is split at the library's phase boundaries (:class:`neuroscope.attacks.Attack`: propose, score in chunks,
observe) and every piece is its own worker job at ``PRIORITY``, behind live next-token requests (priority 0)
and the other views (1). The rows per scoring job adapt so that one job takes about ``JOB_BUDGET_MS``: a click
waits at most one such job. A stopped or abandoned search runs nothing more: queued jobs see the cancel flag
and return at once, and the slot is freed in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from neuroscope.attacks import Attack, AttackConfig, verify
from neuroscope.attacks.scorer import Scores
from neuroscope.attacks.verify import check_budget
from neuroscope.errors import SearchBusyError

PRIORITY = 2
JOB_BUDGET_MS = 150.0

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Cancelled(Exception):
    """A queued job of a search that has been abandoned."""


@dataclass
class Search:
    config: AttackConfig
    prompt: str
    target: str
    stop_requested: bool = False
    cancelled: bool = False
    attack: Attack | None = None
    rows_per_job: int = 4
    started: float = field(default_factory=time.perf_counter)

    def status(self) -> dict[str, Any]:
        a = self.attack
        return {
            "running": True,
            "method": self.config.method,
            "step": a.step_index if a else 0,
            "steps": self.config.steps,
        }


class SearchSlot:
    """The server's one search (``app.state``): a second start while one runs is refused, not queued."""

    def __init__(self) -> None:
        self.active: Search | None = None

    def claim(self, search: Search) -> None:
        if self.active is not None:
            raise SearchBusyError()
        self.active = search

    def release(self, search: Search) -> None:
        if self.active is search:
            self.active = None

    def status(self) -> dict[str, Any]:
        return self.active.status() if self.active else {"running": False}


async def run_search(worker: Any, slot: SearchSlot, search: Search, send: Send) -> None:
    """Run ``search`` (already holding ``slot``: claim it synchronously before starting this task) to its end
    (verified success, budget or stop), sending one message per step."""
    try:
        await _run(worker, search, send)
    finally:
        search.cancelled = True  # jobs still queued (after a disconnect) return without touching the model
        slot.release(search)


async def _job(worker: Any, search: Search, fn: Callable[..., Any], *args: Any) -> Any:
    def guarded() -> Any:
        if search.cancelled:
            raise Cancelled()
        return fn(*args)

    return await worker.call(guarded, priority=PRIORITY)


async def _run(worker: Any, search: Search, send: Send) -> None:
    model = worker.model
    out = await _job(worker, search, Attack, model, search.prompt, search.target, search.config)
    attack: Attack = out.value
    search.attack = attack
    problem = attack.problem
    init = problem.init_ids
    await send(
        {
            "type": "started",
            "config": search.config.to_dict(),
            "chat": problem.chat,
            "init_loss": attack.init_loss,
            "init_suffix": problem.decode(init),
            "rendered_prompt": problem.render(init),
        }
    )
    shown: str | None = None
    budget = check_budget(problem, search.config.max_new_tokens)
    while not attack.done and not search.stop_requested:
        candidates = (await _job(worker, search, attack.propose)).value
        parts = []
        i = 0
        while i < len(candidates):
            n = search.rows_per_job
            timed = await _job(worker, search, attack.score, candidates[i : i + n])
            parts.append(timed.value)
            rows = len(candidates[i : i + n])
            i += rows
            per_row = max(timed.compute_ms / rows, 1e-3)
            search.rows_per_job = int(max(1, min(search.config.batch_size, JOB_BUDGET_MS // per_row)))
        scores = Scores.cat(parts)
        record = (await _job(worker, search, attack.observe, candidates, scores)).value
        output = None
        if record.best_suffix != shown:
            v = (await _job(worker, search, verify, model, problem, record.best_suffix, budget)).value
            output, shown = v.output, record.best_suffix
        await send(
            {
                "type": "step",
                **record.to_dict(),
                "rendered_prompt": problem.render(record.best_suffix),
                "output": output,
                "rows_per_job": search.rows_per_job,
            }
        )
    result = (await _job(worker, search, attack.result)).value
    reason = "success" if result.success else ("stopped" if search.stop_requested else "budget")
    await send({"type": "done", "reason": reason, "result": result.to_dict()})


async def cancel(task: asyncio.Task[None] | None, search: Search | None, slot: SearchSlot) -> None:
    """Abandon a search (its client is gone): no further jobs run and the slot is free again (also when the
    task was cancelled before it started, so its own ``finally`` never ran)."""
    if search is not None:
        search.cancelled = True
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # the client is gone: no one to tell
            await task
    if search is not None:
        slot.release(search)
