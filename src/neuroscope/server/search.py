"""An adversarial search inside the server: one at a time, on its own thread, behind every live request.

A search step costs seconds of CPU. Run as jobs on the model worker's queue (even split into ~150 ms pieces)
a click still waits for the piece in progress, and pieces that cannot be split (the gradient pass, a greedy
decode) take much longer on a loaded machine: measured here, click-to-logits p50 went from 0.5 s to 2.0 s.
So the search runs on a thread of its own with one torch thread and a lower CPU priority (nice ``NICE``, where
the OS allows it): the model worker's thread, which answers clicks, never waits for it, and where the two share
a core the kernel gives the worker about three quarters of it. (Not nice 19: on a machine busy with other
work a nice-19 thread all but stops.) Sharing the model is safe: hooks are dispatched per context (a ``ContextVar``), weights are
read-only, and the search touches none of the worker's caches.

The thread checks the stop and cancel flags between the library's phases (:class:`~neuroscope.attacks.Attack`:
propose, score in chunks of ``config.batch_size`` rows, observe), so a stop or a disconnect ends it within
one chunk; messages reach the event loop through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from neuroscope.attacks import Attack, AttackConfig, verify
from neuroscope.attacks.scorer import Scores
from neuroscope.attacks.verify import check_budget
from neuroscope.errors import NeuroscopeError, SearchBusyError
from neuroscope.server.compute import PromptLimitError, check_ids
from neuroscope.server.errors import error_status

NICE = 5


class Cancelled(Exception):
    """The search was abandoned (its client left): stop at the next phase boundary."""


@dataclass
class Search:
    config: AttackConfig
    prompt: str
    target: str
    stop_requested: bool = False
    cancelled: bool = False
    attack: Attack | None = None
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.perf_counter)

    def status(self) -> dict[str, Any]:
        a = self.attack
        return {
            "running": True,
            "method": self.config.method,
            "step": a.step_index if a else 0,
            "steps": self.config.steps,
        }

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled()


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


def _lower_priority() -> None:
    torch.set_num_threads(1)  # per calling thread: this thread's ops then run on it alone
    with contextlib.suppress(AttributeError, OSError):  # Linux applies nice per thread; elsewhere skip
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def _build(worker: Any, search: Search) -> Attack:
    """The Attack, within the server's prompt limits: the prompt with its suffix must stay a prompt the
    workbench accepts, since Apply puts it there."""
    if len(search.prompt) > worker.max_prompt_chars:
        raise PromptLimitError("chars", len(search.prompt), worker.max_prompt_chars)
    attack = Attack(worker.model, search.prompt, search.target, search.config)
    p = attack.problem
    check_ids(torch.cat([p.before_ids, p.init_ids, p.after_ids]), worker.max_prompt_tokens)
    return attack


def _search_thread(worker: Any, search: Search, emit: Any) -> None:
    """The whole search, on its own thread; ``emit(message)`` hands each message to the event loop."""
    _lower_priority()
    try:
        attack = search.attack = _build(worker, search)
        problem, model = attack.problem, worker.model
        init = problem.init_ids
        emit(
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
        b = search.config.batch_size
        while not attack.done and not search.stop_requested:
            search.check()
            candidates = attack.propose()
            parts = []
            for i in range(0, len(candidates), b):
                search.check()
                parts.append(attack.score(candidates[i : i + b]))
            record = attack.observe(candidates, Scores.cat(parts))
            output = None
            if record.best_suffix != shown:
                output, shown = verify(model, problem, record.best_suffix, budget).output, record.best_suffix
            emit(
                {
                    "type": "step",
                    **record.to_dict(),
                    "rendered_prompt": problem.render(record.best_suffix),
                    "output": output,
                }
            )
        search.check()
        result = attack.result()
        reason = "success" if result.success else ("stopped" if search.stop_requested else "budget")
        emit({"type": "done", "reason": reason, "result": result.to_dict()})
    except Cancelled:
        return
    except NeuroscopeError as e:
        emit({"type": "error", "status": 422, "detail": str(e), "_error": e})
    except Exception as e:  # a bug, not bad input: say so
        emit({"type": "error", "status": 500, "detail": f"internal error: {type(e).__name__}: {e}"})


async def run_search(worker: Any, slot: SearchSlot, search: Search, send: Any) -> None:
    """Run ``search`` (already holding ``slot``: claim it synchronously before starting this task) to its end
    (verified success, budget or stop), forwarding each message to ``send``. Cancelling this task abandons the
    search: the thread stops at its next phase boundary and then releases the slot itself, so the slot is free
    exactly when nothing of the search runs any more."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def on_loop(fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is shutting down
            loop.call_soon_threadsafe(fn, *args)

    last: list[dict[str, Any]] = []

    def emit(msg: dict[str, Any]) -> None:
        # the closing message (done or error) waits until the slot is free: a client that starts again as
        # soon as it reads it must not be told a search is still running
        if msg["type"] in ("done", "error"):
            last.append(msg)
        else:
            on_loop(queue.put_nowait, msg)

    def body() -> None:
        try:
            _search_thread(worker, search, emit)
        finally:
            on_loop(slot.release, search)  # callbacks run in order: released before the client hears
            for msg in last:
                on_loop(queue.put_nowait, msg)
            on_loop(queue.put_nowait, None)

    search.thread = threading.Thread(target=body, name="neuroscope-search", daemon=True)
    search.thread.start()
    try:
        while (msg := await queue.get()) is not None:
            error = msg.pop("_error", None)
            if error is not None:
                msg["status"] = error_status(error)
            await send(msg)
    finally:
        search.cancelled = True  # a no-op after a normal end; after a disconnect, the thread stops


def cancel(task: asyncio.Task[None] | None, search: Search | None, slot: SearchSlot) -> None:
    """Abandon a search (its client is gone): nothing more runs for it. A started search's thread releases the
    slot when it stops (within one chunk of work); one whose task never ran is released here."""
    if search is not None:
        search.cancelled = True
    if task is not None and not task.done():
        task.cancel()
    if search is not None and search.thread is None:
        slot.release(search)
