"""Map library errors to HTTP statuses and readable messages."""

from __future__ import annotations

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
