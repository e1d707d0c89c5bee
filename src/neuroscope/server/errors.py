"""Map library errors to HTTP statuses and readable messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from neuroscope.errors import ModelNotFoundError, NeuroscopeError, ResourceNotFoundError


def error_status(e: NeuroscopeError) -> int:
    if isinstance(e, (ResourceNotFoundError, ModelNotFoundError)):
        return 404
    return 422


def validation_message(e: ValidationError | RequestValidationError) -> str:
    """One readable line from pydantic's error list (``field: what is wrong``), for REST and WebSocket alike."""
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "Invalid request."


def ws_error(request_id: Any, e: BaseException) -> dict[str, Any]:
    """The WebSocket ``error`` message for an exception raised while answering a request: bad input gets its
    status and message; anything else is a bug, said so as a 500, and the connection keeps serving."""
    if isinstance(e, NeuroscopeError):
        return {"type": "error", "id": request_id, "status": error_status(e), "detail": str(e)}
    return {
        "type": "error",
        "id": request_id,
        "status": 500,
        "detail": f"internal error: {type(e).__name__}: {e}",
    }


async def receive_text_frame(
    websocket: WebSocket, limit: int, send: Callable[[dict[str, Any]], Awaitable[None]]
) -> str | None:
    """The next text frame of a WebSocket, or None after answering an oversized (413) or binary (415) one.

    ``receive()``, not ``receive_text()``: any client may send a binary frame, and ``receive_text()`` raises
    KeyError on it and drops the connection. A disconnect raises :class:`WebSocketDisconnect`."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text, data = message.get("text"), message.get("bytes")
    size = len(data) if text is None and data is not None else len((text or "").encode())
    if size > limit:
        await send(
            {"type": "error", "id": None, "status": 413, "detail": f"Message is larger than {limit} bytes."}
        )
        return None
    if text is None:
        detail = "Binary frames are not accepted: send each request as JSON in a text frame."
        await send({"type": "error", "id": None, "status": 415, "detail": detail})
        return None
    return text
