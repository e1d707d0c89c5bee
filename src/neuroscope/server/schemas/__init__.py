"""Pydantic models at the HTTP/WebSocket edge only; the worker speaks plain Python and tensors."""
