"""Security: token on every route and the WebSocket, Host allowlist, WebSocket Origin, size limits, no CORS."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.testclient import WebSocketDenialResponse

from neuroscope.server.app import create_app
from neuroscope.server.cli import main as ui_main
from neuroscope.server.settings import Settings

BASE = "http://127.0.0.1:8000"
WS = "ws://127.0.0.1:8000/ws"
TOKEN = "s3cret-token-123"
MSG = {"id": 1, "prompt": "hi there"}


@pytest.fixture
def open_client(tiny_llama):
    with TestClient(
        create_app(Settings(model="tiny:llama", max_body_bytes=2048), model=tiny_llama), base_url=BASE
    ) as c:
        yield c


@pytest.fixture
def token_client(tiny_llama):
    settings = Settings(model="tiny:llama", host="0.0.0.0", token=TOKEN, allowed_hosts=("127.0.0.1",))
    with TestClient(create_app(settings, model=tiny_llama), base_url=BASE) as c:
        yield c


def test_wildcard_host_without_token_refuses_to_start(capsys):
    with pytest.raises(ValidationError, match="without a token"):
        Settings(model="tiny:llama", host="0.0.0.0")
    assert ui_main(["--model", "tiny:llama", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "Refusing to serve on '0.0.0.0' without a token" in capsys.readouterr().err
    with pytest.raises(ValidationError, match="at least 8"):
        Settings(model="tiny:llama", host="10.0.0.5", token="short")
    assert Settings(host="127.0.0.1").token is None and Settings(host="::1").host == "::1"


def test_every_rest_route_needs_the_token(token_client):
    spec = token_client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    routes = [(m, p) for p, ops in spec["paths"].items() for m in ops]
    # every HTTP route the app has, documented or not (e.g. /web), with path parameters filled in
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    def walk(items, prefix: str = ""):
        for r in items:
            if isinstance(r, APIRoute | Route):
                yield from ((m.lower(), prefix + r.path) for m in r.methods or () if m != "HEAD")
            elif hasattr(r, "original_router"):
                yield from walk(r.original_router.routes, prefix + r.include_context.prefix)

    def filled(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "x", path)

    every = {(m, filled(p)) for m, p in walk(token_client.app.routes)}
    assert {(m, filled(p)) for m, p in routes} <= every and len(every) >= 11
    for method, path in sorted(every | {("get", "/"), ("get", "/openapi.json")}):
        r = token_client.request(method.upper(), path, json={"prompt": "hi"})
        assert r.status_code == 401, (method, path)
        assert "token" in r.json()["detail"]
        wrong = token_client.request(
            method.upper(), path, json={"prompt": "hi"}, headers={"Authorization": "Bearer nope-nope"}
        )
        assert wrong.status_code == 401
    ok = token_client.post("/api/run", json={"prompt": "hi"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert token_client.get("/api/model", headers={"X-Neuroscope-Token": TOKEN}).status_code == 200


def test_query_token_sets_a_cookie_for_the_page(token_client):
    r = token_client.get(f"/?token={TOKEN}")
    assert r.status_code == 200
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
    # the test client now holds the cookie: the page's own requests and its WebSocket pass
    assert token_client.get("/api/model").status_code == 200
    with token_client.websocket_connect(WS) as ws:
        ws.send_json(MSG)
        assert ws.receive_json()["type"] == "result"


def test_websocket_needs_the_token(token_client):
    with pytest.raises(WebSocketDenialResponse) as e, token_client.websocket_connect(WS):
        pass
    assert e.value.status_code == 401
    with token_client.websocket_connect(f"{WS}?token={TOKEN}") as ws:
        ws.send_json(MSG)
        assert ws.receive_json()["type"] == "result"
    with token_client.websocket_connect(WS, headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        ws.send_json(MSG)
        assert ws.receive_json()["id"] == 1


def test_foreign_origin_is_refused_on_the_websocket(open_client):
    with (
        pytest.raises(WebSocketDenialResponse) as e,
        open_client.websocket_connect(WS, headers={"Origin": "http://evil.example"}),
    ):
        pass
    assert e.value.status_code == 403
    with open_client.websocket_connect(WS, headers={"Origin": "http://127.0.0.1:8000"}) as ws:  # same origin
        ws.send_json(MSG)
        assert ws.receive_json()["type"] == "result"
    r = open_client.post("/api/run", json={"prompt": "hi"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403  # a cross-site POST is refused too (cookies would ride along)


def test_foreign_host_header_is_refused(open_client):
    r = open_client.get("/api/model", headers={"Host": "attacker.example:8000"})
    assert r.status_code == 400 and "Host header" in r.json()["detail"]
    with (
        pytest.raises(WebSocketDenialResponse) as e,
        open_client.websocket_connect("ws://attacker.example:8000/ws"),
    ):
        pass
    assert e.value.status_code == 400
    assert open_client.get("/api/model", headers={"Host": "localhost:8000"}).status_code == 200


def test_allowed_hosts_and_cors_are_opt_in(tiny_llama, open_client):
    pre = {"Origin": "http://other.example", "Access-Control-Request-Method": "POST"}
    r = open_client.options("/api/run", headers=pre)
    assert "access-control-allow-origin" not in r.headers  # no CORS unless configured
    settings = Settings(
        model="tiny:llama", allowed_hosts=("lab.local",), cors_origins=("http://other.example",)
    )
    with TestClient(create_app(settings, model=tiny_llama), base_url="http://lab.local:8000") as c:
        assert c.get("/api/model").status_code == 200
        r = c.options("/api/run", headers=pre)
        assert r.headers["access-control-allow-origin"] == "http://other.example"
        assert (
            c.post("/api/run", json={"prompt": "hi"}, headers={"Origin": "http://other.example"}).status_code
            == 200
        )


def test_size_limits(open_client):
    big = {"prompt": "a" * 3000}
    r = open_client.post("/api/run", json=big)
    assert r.status_code == 413 and "limit is 2048" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(4):
            yield b" " * 1000

    r = open_client.post("/api/run", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    with open_client.websocket_connect(WS) as ws:
        ws.send_text('{"id": 5, "prompt": "' + "a" * 3000 + '"}')
        reply = ws.receive_json()
        assert reply["type"] == "error" and reply["status"] == 413
        ws.send_json(MSG)  # the connection stays usable
        assert ws.receive_json()["type"] == "result"


def test_ui_subcommand_is_wired_and_maps_to_settings():
    from neuroscope.cli import build_parser
    from neuroscope.server.cli import settings_from_args

    args = build_parser().parse_args(
        [
            "ui",
            "--model",
            "tiny:llama",
            "--host",
            "10.1.2.3",
            "--port",
            "9001",
            "--token",
            TOKEN,
            "--allow-host",
            "lab.local",
            "--threads",
            "1",
        ]
    )
    s = settings_from_args(args)
    assert (s.model, s.host, s.port, s.token, s.allowed_hosts, s.torch_threads) == (
        "tiny:llama",
        "10.1.2.3",
        9001,
        TOKEN,
        ("lab.local",),
        1,
    )
    assert {"10.1.2.3", "lab.local", "127.0.0.1"} <= s.host_allowlist()
