"""/ws/attack and /api/attack/status on tiny:llama: the search the library runs, one at a time, stoppable,
abandoned cleanly when the client leaves, and never in the way of live requests."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

import neuroscope as ns
from neuroscope.attacks import AttackConfig, run_attack
from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

BASE = "http://127.0.0.1:8000"
WS_ATTACK = "ws://127.0.0.1:8000/ws/attack"
START = {"type": "start", "prompt": "Hello", "target": "a", "width": 32, "suffix_len": 8, "topk": 16}
START["max_new_tokens"] = 8
# this module's routes -> the test that requests each (collected by test_server_api's route walk)
ROUTE_TESTS = {
    ("WS", "/ws/attack"): "test_server_attack::test_a_search_streams_steps_and_equals_the_library",
    ("GET", "/api/attack/status"): "test_server_attack::test_stop_ends_the_search_and_frees_the_slot",
}


@pytest.fixture
def client(tiny_llama):
    with TestClient(create_app(Settings(model="tiny:llama"), model=tiny_llama), base_url=BASE) as c:
        yield c


def _until(ws, kind: str, limit: int = 500) -> tuple[dict, list[dict]]:
    seen = []
    for _ in range(limit):
        msg = ws.receive_json()
        seen.append(msg)
        if msg["type"] in (kind, "error"):
            return msg, seen
    raise AssertionError(f"no {kind} message in {limit}")


def _idle(client, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/api/attack/status").json()["running"]:
        assert time.monotonic() < deadline, "the search slot was never released"
        time.sleep(0.05)


def test_a_search_streams_steps_and_equals_the_library(client, tiny_llama):
    with client.websocket_connect("ws://127.0.0.1:8000/ws/attack") as ws:
        ws.send_json(START)
        started, _ = _until(ws, "started")
        assert started["chat"] and started["init_suffix"] == " x x x x"[:8]
        done, msgs = _until(ws, "done")
    steps = [m for m in msgs if m["type"] == "step"]
    assert [m["step"] for m in steps] == list(range(1, len(steps) + 1))  # one message per step, in order
    assert steps[0]["output"] is not None and all(m["candidates"] >= 1 for m in steps)
    assert done["reason"] == "success" and done["result"]["success"]
    lib = run_attack(
        tiny_llama, "Hello", "a", AttackConfig(width=32, suffix_len=8, topk=16, max_new_tokens=8)
    )
    assert done["result"]["best_suffix"] == lib.best_suffix and done["result"]["steps"] == len(lib.history)
    assert done["result"]["losses"] == pytest.approx(lib.losses, abs=1e-5)
    assert steps[-1]["rendered_prompt"] == lib.rendered_prompt or steps[-1]["verified"]
    _idle(client)


def test_stop_ends_the_search_and_frees_the_slot(client):
    with client.websocket_connect(WS_ATTACK) as ws:
        ws.send_json({**START, "target": "abcdef", "steps": 500})
        _until(ws, "step")
        assert client.get("/api/attack/status").json()["running"]
        ws.send_json({"type": "stop"})
        done, msgs = _until(ws, "done")
    assert done["reason"] == "stopped" and done["result"]["steps"] < 500
    _idle(client)


def test_one_search_per_server(client):
    with client.websocket_connect(WS_ATTACK) as a, client.websocket_connect(WS_ATTACK) as b:
        a.send_json({**START, "target": "abcdef", "steps": 500})
        _until(a, "step")
        b.send_json(START)
        err, _ = _until(b, "started")
        assert err["type"] == "error" and err["status"] == 409 and "already running" in err["detail"]
        a.send_json(START)  # the same client, too
        err, _ = _until(a, "error")
        assert err["status"] == 409
        a.send_json({"type": "stop"})
        _until(a, "done")
    _idle(client)


def test_a_client_that_leaves_abandons_its_search(client):
    with client.websocket_connect(WS_ATTACK) as ws:
        ws.send_json({**START, "target": "abcdef", "steps": 500})
        _until(ws, "step")
        assert any(t.name == "neuroscope-search" for t in threading.enumerate())
    _idle(client)
    assert not any(t.name == "neuroscope-search" for t in threading.enumerate())  # its thread has ended
    with client.websocket_connect(WS_ATTACK) as ws:  # and the slot is free for the next one
        ws.send_json(START)
        done, _ = _until(ws, "done")
    assert done["result"]["success"]


def test_live_requests_answer_while_a_search_runs(client, tiny_llama):
    with (
        client.websocket_connect(WS_ATTACK) as search,
        client.websocket_connect("ws://127.0.0.1:8000/ws") as live,
    ):
        search.send_json({**START, "target": "abcdef", "steps": 500})
        _until(search, "step")
        for i in range(3):
            live.send_json({"id": i, "prompt": "The cat sat", "interventions": {"heads": [[1, i]]}})
            reply = live.receive_json()
            assert reply["type"] == "result" and reply["id"] == i
        assert client.get("/api/attack/status").json()["running"]  # the search was still going
        search.send_json({"type": "stop"})
        _until(search, "done")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"target": ""}, "target is empty"),
        ({"width": 0}, "width 0"),
        ({"method": "genetic", "width": 0}, "population 0"),
        ({"suffix_len": 0}, "Suffix length 0"),
        ({"suffix_len": 101}, "Suffix length 101"),
        ({"max_new_tokens": 1, "target": "abc"}, "generation budget"),
        ({"method": "beam"}, "method"),
        ({"extra": 1}, "extra"),
        ({"prompt": "word " * 25}, "at most 128"),
    ],
)
def test_bad_input_is_an_error_message(client, change, words):
    with client.websocket_connect(WS_ATTACK) as ws:
        ws.send_json({**START, **change})
        err = ws.receive_json()
    assert err["type"] == "error" and err["status"] == 422 and words in err["detail"]
    assert not client.get("/api/attack/status").json()["running"]


def test_gcg_without_gradients_suggests_the_other_methods():
    model = ns.load_model("tiny:llama", device="cpu")
    norm = model.hf_model.get_submodule(model.adapter.final_norm)
    norm.register_forward_hook(lambda mod, args, out: out.detach())
    with TestClient(create_app(Settings(model="tiny:llama"), model=model), base_url=BASE) as c:
        with c.websocket_connect(WS_ATTACK) as ws:
            ws.send_json(START)
            err = ws.receive_json()
            assert err["type"] == "error" and "--method genetic" in err["detail"]
            ws.send_json({**START, "method": "genetic", "steps": 2})
            done, _ = _until(ws, "done")
            assert done["reason"] == "budget"
        _idle(c)
