"""``/ws/attack``: run an adversarial suffix search and watch it step by step; ``/api/attack/status``.

The client sends ``{"type": "start", ...}`` (see :class:`AttackStart`) and later, optionally, ``{"type":
"stop"}``; the server answers ``started``, one ``step`` per search step, then ``done`` with the whole run.
One search per server: a start while another runs gets an ``error`` with status 409. A client that
disconnects abandons its search: nothing more runs for it and the slot is free again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from neuroscope.attacks import AttackConfig
from neuroscope.errors import NeuroscopeError, SearchBusyError
from neuroscope.server.errors import error_status, validation_message
from neuroscope.server.schemas.attack import AttackStart, AttackStatus, AttackStop
from neuroscope.server.search import Search, SearchSlot, cancel, run_search

router = APIRouter(tags=["attack"])


def slot_of(app: Any) -> SearchSlot:
    slot = getattr(app.state, "attack_slot", None)
    if slot is None:  # created on first use, on the event loop's thread
        slot = app.state.attack_slot = SearchSlot()
    return slot


@router.get("/api/attack/status", response_model=AttackStatus)
async def status(request: Request) -> dict[str, Any]:
    return slot_of(request.app).status()


def _config(req: AttackStart) -> AttackConfig:
    return AttackConfig(
        method=req.method,
        steps=req.steps,
        width=req.width,
        suffix_len=req.suffix_len,
        seed=req.seed,
        topk=req.topk,
        chat=req.chat,
        max_new_tokens=req.max_new_tokens,
        elites=min(16, max(0, req.width - 1)),
    )


@router.websocket("/ws/attack")
async def attack_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    app = websocket.app
    worker, slot = app.state.worker, slot_of(app)
    limit = app.state.settings.max_body_bytes
    send_lock = asyncio.Lock()
    task: asyncio.Task[None] | None = None
    search: Search | None = None

    async def send(payload: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(payload))

    async def error(status: int, detail: str) -> None:
        await send({"type": "error", "status": status, "detail": detail})

    async def drive(s: Search) -> None:
        try:
            await run_search(worker, slot, s, send)
        except NeuroscopeError as e:
            await error(error_status(e), str(e))
        except (asyncio.CancelledError, WebSocketDisconnect):
            raise
        except Exception as e:  # a bug, not bad input: say so; the slot is already free
            await error(500, f"internal error: {type(e).__name__}: {e}")

    try:
        while True:
            text = await websocket.receive_text()
            if len(text.encode()) > limit:
                await error(413, f"Message is larger than {limit} bytes.")
                continue
            try:
                kind = json.loads(text).get("type")
            except (ValueError, AttributeError):
                kind = None
            try:
                if kind == "stop":
                    AttackStop.model_validate_json(text)
                    if search is not None:
                        search.stop_requested = True
                    continue
                req = AttackStart.model_validate_json(text)
            except ValidationError as e:
                await error(422, validation_message(e))
                continue
            try:
                new = Search(_config(req), req.prompt, req.target)
                slot.claim(new)  # now, not in the task: two starts in one loop turn cannot both pass
            except NeuroscopeError as e:
                await error(409 if isinstance(e, SearchBusyError) else error_status(e), str(e))
                continue
            search = new
            task = asyncio.create_task(drive(search))
    except WebSocketDisconnect:
        pass
    finally:
        cancel(task, search, slot)
