"""The /ws protocol: replies equal the library, latest wins, errors are replies, and many clients at once."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import threading
import time

import psutil
import pytest
import torch
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from neuroscope.interventions import Ablate
from neuroscope.server.app import create_app
from neuroscope.server.background import serve_in_thread
from neuroscope.server.routers.ws import LatestSlot
from neuroscope.server.schemas.run import WsRequest
from neuroscope.server.settings import Settings

WS = "ws://127.0.0.1:8000/ws"
# The acceptance run is 30 s (NEUROSCOPE_WS_STRESS_SECONDS=30); the default unit tier uses 3 s
# (batched, tiny:llama answers ~300 requests/s, and every reply is then re-run through the library).
STRESS_SECONDS = float(os.environ.get("NEUROSCOPE_WS_STRESS_SECONDS", "3"))


@pytest.fixture
def client(tiny_llama):
    with TestClient(
        create_app(Settings(model="tiny:llama"), model=tiny_llama), base_url="http://127.0.0.1:8000"
    ) as c:
        yield c


@torch.no_grad()
def library_top(model, prompt: str, heads, k: int):
    ivs = [Ablate(heads=[tuple(h) for h in heads])] if heads else []
    probs = torch.softmax(model.run_with_hooks(prompt, interventions=ivs)[0, -1].float(), -1)
    vals, idx = probs.topk(k)
    return idx.tolist(), vals.tolist()


def test_reply_matches_library(client, tiny_llama):
    with client.websocket_connect(WS) as ws:
        ws.send_json({"id": "a", "prompt": "hello world", "interventions": {"heads": [[1, 1]]}, "top_k": 4})
        r = ws.receive_json()
    assert r["type"] == "result" and r["id"] == "a"
    ids, probs = library_top(tiny_llama, "hello world", [[1, 1]], 4)
    assert [t["token_id"] for t in r["top"]] == ids
    assert [t["prob"] for t in r["top"]] == pytest.approx(probs, abs=1e-5)
    assert set(r["timings"]) >= {"queue_ms", "compute_ms", "total_ms", "first_layer", "recomputed_layers"}
    assert r["timings"]["total_ms"] >= r["timings"]["compute_ms"]


def test_errors_are_replies_and_the_socket_survives(client):
    with client.websocket_connect(WS) as ws:
        ws.send_text("not json")
        r = ws.receive_json()
        assert (r["type"], r["id"], r["status"]) == ("error", None, 422) and "JSON" in r["detail"]
        ws.send_json({"id": 3, "prompt": ""})
        r = ws.receive_json()
        assert r["type"] == "error" and r["id"] == 3 and "prompt" in r["detail"]
        ws.send_json({"id": 4, "prompt": "hi", "interventions": {"heads": [[9, 0]]}})
        r = ws.receive_json()
        assert (r["type"], r["id"], r["status"]) == ("error", 4, 422) and "layer 9 is out of range" in r[
            "detail"
        ]
        ws.send_json({"id": 5, "prompt": "hi"})
        assert ws.receive_json()["type"] == "result"


def test_latest_wins(client, tiny_llama):
    """A burst of requests: every id gets exactly one reply, and the newest always gets a result."""
    with client.websocket_connect(WS) as ws:
        for i in range(12):
            ws.send_json({"id": i, "prompt": f"burst {i}", "interventions": {"heads": [[i % 2, i % 4]]}})
        replies = {}
        while 11 not in replies:
            r = ws.receive_json()
            assert r["id"] not in replies
            replies[r["id"]] = r
    assert replies[11]["type"] == "result"
    kinds = [replies[i]["type"] for i in sorted(replies)]
    assert set(kinds) <= {"result", "superseded"}
    ids, _ = library_top(tiny_llama, "burst 11", [[1, 3]], 10)
    assert [t["token_id"] for t in replies[11]["top"]] == ids


def test_latest_slot_unit():
    async def go():
        slot = LatestSlot()
        a, b = (WsRequest(id=1, prompt="a"), 0.0), (WsRequest(id=2, prompt="b"), 0.0)
        assert slot.put(a) is None
        assert slot.put(b) is a  # a was still queued: displaced
        got = await slot.take()
        assert got is b
        waiter = asyncio.create_task(slot.take())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        slot.put(a)
        assert await asyncio.wait_for(waiter, 1) is a

    asyncio.run(go())


def test_twenty_concurrent_clients(tiny_llama):
    """20 clients over real sockets, each toggling its own heads; every reply equals the library's."""
    n_clients = 20
    settings = Settings(model="tiny:llama", cache_size=24)
    app = create_app(settings, model=tiny_llama)
    cfg = tiny_llama.cfg
    log: list[tuple[str, tuple, dict]] = []
    errors: list[str] = []
    lock = threading.Lock()
    proc = psutil.Process()

    def client(k: int, url: str, stop_at: float) -> None:
        rng = random.Random(k)
        prompt = f"client {k} says hello to the workbench"
        heads: set[tuple[int, int]] = set()
        seq = 0
        try:
            with connect(url, open_timeout=30) as ws:
                while time.monotonic() < stop_at:
                    heads ^= {(rng.randrange(cfg.n_layers), rng.randrange(cfg.n_heads))}
                    seq += 1
                    spec = sorted(heads)
                    ws.send(
                        json.dumps(
                            {"id": seq, "prompt": prompt, "interventions": {"heads": spec}, "top_k": 5}
                        )
                    )
                    reply = json.loads(ws.recv(timeout=60))
                    if reply["type"] != "result" or reply["id"] != seq:
                        errors.append(f"client {k}: {reply}")
                        return
                    with lock:
                        log.append((prompt, tuple(map(tuple, spec)), reply))
        except Exception as e:  # any failure is a test failure, reported below
            errors.append(f"client {k}: {e!r}")

    t_start = time.monotonic()
    with serve_in_thread(app) as base:
        url = base.replace("http", "ws") + "/ws"
        warm_end = time.monotonic() + min(2.0, STRESS_SECONDS / 4)
        threads = [threading.Thread(target=client, args=(k, url, warm_end)) for k in range(n_clients)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        gc.collect()
        rss_start = proc.memory_info().rss
        n_warm = len(log)
        stop_at = time.monotonic() + STRESS_SECONDS
        threads = [threading.Thread(target=client, args=(k, url, stop_at)) for k in range(n_clients)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        gc.collect()
        rss_end = proc.memory_info().rss
        t_served = time.monotonic()
    assert not errors, errors[:3]
    assert len(log) - n_warm >= n_clients * 3, f"only {len(log) - n_warm} replies in {STRESS_SECONDS} s"
    checked = {}
    for prompt, heads, reply in log:
        key = (prompt, heads)
        if key not in checked:
            checked[key] = library_top(tiny_llama, prompt, heads, 5)
        ids, probs = checked[key]
        assert [t["token_id"] for t in reply["top"]] == ids, key
        assert [t["prob"] for t in reply["top"]] == pytest.approx(probs, abs=1e-5), key
    batch_sizes = [reply["timings"]["batch_size"] for _, _, reply in log]
    assert max(batch_sizes) > 1, "concurrent requests were never batched into one forward"
    growth_mb = (rss_end - rss_start) / 2**20
    print(f"phases: serve {t_served - t_start:.1f}s shutdown+verify {time.monotonic() - t_served:.1f}s")
    print(
        f"{len(log) - n_warm} replies from {n_clients} clients in {STRESS_SECONDS} s; RSS growth {growth_mb:.1f} MB;"
        f" batch size mean {sum(batch_sizes) / len(batch_sizes):.1f}, max {max(batch_sizes)}"
    )
    assert growth_mb < 64, f"server memory grew by {growth_mb:.1f} MB"


def test_an_internal_error_is_reported_and_the_socket_survives(client, monkeypatch):
    worker = client.app.state.worker
    real = worker.plain

    def flaky(prompt):
        if prompt == "boom":
            raise RuntimeError("kaput")
        return real(prompt)

    monkeypatch.setattr(worker, "plain", flaky)
    with client.websocket_connect(WS) as ws:
        ws.send_json({"id": 1, "prompt": "boom"})
        r = ws.receive_json()
        assert (r["type"], r["status"]) == ("error", 500) and "kaput" in r["detail"]
        ws.send_json({"id": 2, "prompt": "fine"})
        assert ws.receive_json()["type"] == "result"
