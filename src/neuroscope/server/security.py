"""One ASGI middleware for every request and WebSocket: Host allowlist, token, Origin, body size.

It is pure ASGI rather than Starlette's HTTP middleware because that would not see WebSocket upgrades, and
CORS middleware does not protect them either: a page on any site may open a WebSocket to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from neuroscope.server.settings import Settings

COOKIE = "neuroscope_token"
Scope = dict[str, Any]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def host_without_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def origin_allowed(origin: str, host_header: str, extra: tuple[str, ...]) -> bool:
    """Same-origin (the Origin's host:port equals the Host header) or explicitly configured."""
    if origin in extra or "*" in extra:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


class SecurityMiddleware:
    def __init__(self, app: Any, settings: Settings):
        self.app = app
        self.settings = settings
        self.hosts = {h.lower() for h in settings.host_allowlist()}

    def _token_ok(self, scope: Scope, headers: dict[str, str]) -> tuple[bool, bool]:
        """(authorised, came from the query string: then set a cookie so the page's own requests pass)."""
        token = self.settings.token
        if token is None:
            return True, False
        auth = headers.get("authorization", "")
        given = [auth[7:]] if auth.lower().startswith("bearer ") else []
        given += [headers["x-neuroscope-token"]] if "x-neuroscope-token" in headers else []
        cookie = SimpleCookie()
        with contextlib.suppress(Exception):  # a malformed cookie header is just no cookie
            cookie.load(headers.get("cookie", ""))
        if COOKIE in cookie:
            given.append(cookie[COOKIE].value)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        for g in given:
            if hmac.compare_digest(g.encode(), token.encode()):
                return True, False
        for g in query:
            if hmac.compare_digest(g.encode(), token.encode()):
                return True, True
        return False, False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        if "*" not in self.settings.allowed_hosts and host_without_port(host).lower() not in self.hosts:
            await self._deny(
                scope, receive, send, 400, f"Host header {host!r} is not allowed; see --allow-host."
            )
            return
        origin = headers.get("origin")
        # Browsers always send Origin on WebSocket upgrades and cross-site POSTs; refuse foreign ones.
        unsafe = scope["type"] == "websocket" or scope.get("method") not in ("GET", "HEAD", "OPTIONS")
        if origin is not None and unsafe and not origin_allowed(origin, host, self.settings.cors_origins):
            await self._deny(scope, receive, send, 403, f"Origin {origin!r} is not allowed.")
            return
        ok, from_query = self._token_ok(scope, headers)
        if not ok:
            await self._deny(
                scope,
                receive,
                send,
                401,
                "Missing or wrong token: pass ?token=… once, or an Authorization: Bearer header.",
            )
            return
        if scope["type"] == "http":
            length = headers.get("content-length")
            limit = self.settings.max_body_bytes
            if length is not None and length.isdigit() and int(length) > limit:
                await self._deny(
                    scope, receive, send, 413, f"Request body is {length} bytes; the limit is {limit}."
                )
                return
            if from_query:
                send = _with_cookie(send, self.settings.token or "")
        await self.app(scope, receive, send)

    async def _deny(self, scope: Scope, receive: Any, send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": head})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})


def _with_cookie(send: Any, token: str) -> Any:
    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode()
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
        await send(message)

    return wrapped
