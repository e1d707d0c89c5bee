"""Whatever a client sends on /ws gets an answer and the connection stays open; `neuroscope ui` picks a torch
thread count that survives a busy machine.

The frames go to `neuroscope ui` in its own process (the transport's frame cap is the CLI's, as `make run`
serves it): binary frames, requests cut off mid-JSON, messages over the size limit, a fragmented message,
then a burst of valid requests, all on one connection.
"""

from __future__ import annotations

import json
import os

import pytest
from server_testutil import library_top, served_ui
from websockets.sync.client import connect

from neuroscope.server.settings import Settings, default_torch_threads


@pytest.fixture(scope="module")
def served():
    with served_ui(timeout=180) as (base, _):
        yield base.replace("http", "ws") + "/ws"


def ask(ws, frame) -> dict:
    ws.send(frame)
    return json.loads(ws.recv(timeout=60))


def test_every_frame_is_answered_and_the_connection_stays_open(served, tiny_llama):
    limit = Settings().max_body_bytes
    valid = json.dumps({"id": "v", "prompt": "hello", "interventions": {"heads": [[1, 2]]}, "top_k": 3})
    with connect(served, open_timeout=60, max_size=None) as ws:
        # binary frames: a JSON request sent as bytes, and bytes that are not text at all
        for frame in (valid.encode(), b"\x00\xff\xfe binary"):
            r = ask(ws, frame)
            assert (r["type"], r["id"], r["status"]) == ("error", None, 415), r
            assert "text frame" in r["detail"]
        # requests cut off part-way: not JSON, answered 422 with what is wrong
        for frame in (valid[: len(valid) // 2], valid[:-1], '{"id": 7, "prompt": "hel'):
            r = ask(ws, frame)
            assert (r["type"], r["status"]) == ("error", 422), r
            assert "JSON" in r["detail"]
        # a valid JSON request with a missing field keeps its id in the reply
        r = ask(ws, json.dumps({"id": 8}))
        assert (r["type"], r["id"], r["status"]) == ("error", 8, 422) and "prompt" in r["detail"]
        # over the size limit, as text and as bytes: 413, not a closed connection
        big = json.dumps({"id": 9, "prompt": "x" * (limit + 1)})
        for frame in (big, big.encode(), b"\x00" * (limit + 1)):
            r = ask(ws, frame)
            assert (r["type"], r["id"], r["status"]) == ("error", None, 413), r
            assert str(limit) in r["detail"]
        # one message sent in fragments is one request
        r = ask(ws, [valid[:10], valid[10:30], valid[30:]])
        assert (r["type"], r["id"]) == ("result", "v")
        assert [t["token_id"] for t in r["top"]] == library_top(tiny_llama, "hello", [[1, 2]], 3)[0]
        # a burst of valid requests: each id answered exactly once, the newest with a result
        n = 25
        for i in range(n):
            heads = [[i % 2, i % 4]]
            ws.send(json.dumps({"id": i, "prompt": f"burst {i}", "interventions": {"heads": heads}}))
        replies: dict[int, dict] = {}
        while len(replies) < n:
            r = json.loads(ws.recv(timeout=60))
            assert r["id"] not in replies, r
            replies[r["id"]] = r
        assert {r["type"] for r in replies.values()} <= {"result", "superseded"}
        assert replies[n - 1]["type"] == "result"
        for i, r in replies.items():
            if r["type"] == "result":
                top = [t["token_id"] for t in r["top"]]
                assert top == library_top(tiny_llama, f"burst {i}", [[i % 2, i % 4]], len(top))[0]
        # and the same connection still serves
        r = ask(ws, json.dumps({"id": "last", "prompt": "still here"}))
        assert (r["type"], r["id"]) == ("result", "last")
        assert [t["token_id"] for t in r["top"]] == library_top(tiny_llama, "still here", [], len(r["top"]))[
            0
        ]


def test_default_threads_leave_room_on_a_busy_machine():
    from neuroscope.cli import build_parser
    from neuroscope.server.cli import settings_from_args, ws_frame_cap

    assert default_torch_threads() == max(1, (os.cpu_count() or 1) // 2)
    assert Settings().torch_threads == default_torch_threads()
    assert settings_from_args(build_parser().parse_args(["ui"])).torch_threads == default_torch_threads()
    assert settings_from_args(build_parser().parse_args(["ui", "--threads", "3"])).torch_threads == 3
    # 0 asks for torch's own default (every core)
    assert settings_from_args(build_parser().parse_args(["ui", "--threads", "0"])).torch_threads is None
    s = Settings(max_body_bytes=4096)
    assert ws_frame_cap(s) > s.max_body_bytes  # oversized messages reach the handler, which answers 413
