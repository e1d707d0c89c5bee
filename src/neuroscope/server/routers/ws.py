"""``/ws``: live next-token predictions. One slot per client: a newer request replaces a queued older one.

Each client has at most one job on the model worker at a time, so twenty clients toggling heads share the
model fairly; while a job runs, the client's newest message waits in the slot and older ones are answered
``superseded`` without touching the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from neuroscope.server.audit import client_of
from neuroscope.server.compute import Spec
from neuroscope.server.errors import receive_text_frame, validation_message, ws_error
from neuroscope.server.schemas.run import WsRequest

router = APIRouter(tags=["ws"])


class LatestSlot:
    """Holds the newest pending request; ``put`` returns the one it displaced (if any)."""

    def __init__(self) -> None:
        self._item: tuple[WsRequest, float] | None = None
        self._event = asyncio.Event()

    def put(self, item: tuple[WsRequest, float]) -> tuple[WsRequest, float] | None:
        old, self._item = self._item, item
        self._event.set()
        return old

    async def take(self) -> tuple[WsRequest, float]:
        while self._item is None:
            self._event.clear()
            await self._event.wait()
        item, self._item = self._item, None
        return item


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    await websocket.accept()
    worker = websocket.app.state.worker
    limit = websocket.app.state.settings.max_body_bytes
    audit, client = getattr(websocket.app.state, "refusal", None), client_of(websocket)
    slot = LatestSlot()
    send_lock = asyncio.Lock()

    async def send(payload: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(payload))

    async def pump() -> None:
        while True:
            req, received = await slot.take()
            try:
                spec = Spec.from_dict(req.interventions.model_dump())
                if audit is not None:  # superseded requests never run, so they are not logged
                    audit.record(spec, req.prompt, client, "live", worker)
                out = await worker.next_token_live(req.prompt, spec, req.top_k)
                total = (time.perf_counter() - received) * 1e3
                await send({"type": "result", "id": req.id, **out.value, "timings": out.timings(total)})
            except Exception as e:  # bad input or a bug: answered, and this client keeps being served
                await send(ws_error(req.id, e))

    task = asyncio.create_task(pump())
    try:
        while True:
            text = await receive_text_frame(websocket, limit, send)
            received = time.perf_counter()
            if text is None:
                continue
            try:
                req = WsRequest.model_validate_json(text)
            except ValidationError as e:
                msg_id = _peek_id(text)
                await send({"type": "error", "id": msg_id, "status": 422, "detail": validation_message(e)})
                continue
            old = slot.put((req, received))
            if old is not None:
                await send({"type": "superseded", "id": old[0].id})
    except WebSocketDisconnect:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(
            asyncio.CancelledError, Exception
        ):  # the client is gone; nothing to report to
            await task


def _peek_id(text: str) -> Any:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, (int, str)) else None
