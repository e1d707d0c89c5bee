"""Click-to-logits latency while an adversarial search runs (``benchmarks/results/attack_latency.json``).

Serves the workbench on smollm2-135m in-process; one WebSocket sends random head ablations like the UI
(``/ws``, one request at a time, send -> reply timed on the client); a second runs a gcg search over
``/ws/attack`` (the shipped example prompt with a long target, so it does not finish during a block).
Blocks of clicks with and without a search alternate, so both see the same machine load; the search is
started afresh for each "with" block and stopped after it. ``python -m benchmarks.attack_latency``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from typing import Any

from benchmarks.latency_bench import _summary, prompt_of_length

TARGET = "Sure, I can help with that. Here is a short poem about the sea, with four rhyming lines"


class _Search:
    """The search's socket, read on a thread so the server never waits on us."""

    def __init__(self, base: str, width: int):
        from websockets.sync.client import connect

        from neuroscope.attacks.cli import example

        self.ws = connect(base.replace("http", "ws") + "/ws/attack", open_timeout=60)
        self.steps: list[dict[str, Any]] = []
        self.done: dict[str, Any] | None = None
        self.error: str | None = None
        self.started = threading.Event()
        start = {"type": "start", "prompt": example()["prompt"], "target": TARGET, "width": width}
        self.ws.send(json.dumps({**start, "steps": 2000, "max_new_tokens": 64}))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for text in self.ws:
            msg = json.loads(text)
            if msg["type"] == "error":
                self.error = msg["detail"]
                self.started.set()
                return
            if msg["type"] == "step":
                self.steps.append(msg)
                self.started.set()
            if msg["type"] == "done":
                self.done = msg
                return

    def stop(self) -> None:
        self.ws.send(json.dumps({"type": "stop"}))
        self.thread.join(timeout=600)
        self.ws.close()


def run(
    n_blocks: int = 10, clicks_per_block: int = 20, width: int = 64, threads: int | None = 1, seed: int = 0
) -> dict[str, Any]:
    import urllib.request

    from websockets.sync.client import connect

    from benchmarks.common import write
    from neuroscope.models.loading import load_model
    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    model = load_model("smollm2-135m")
    prompt = prompt_of_length(model, 32)
    rng = random.Random(seed)
    app = create_app(Settings(model="smollm2-135m", torch_threads=threads), model=model)
    rows: list[dict[str, Any]] = []
    searches: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    with serve_in_thread(app) as base, connect(base.replace("http", "ws") + "/ws", open_timeout=60) as live:
        live.send(json.dumps({"id": 0, "prompt": prompt}))
        assert json.loads(live.recv(timeout=600))["type"] == "result"  # the plain run, cached from here on
        i = 0
        for block in range(2 * n_blocks):
            searching = block % 2 == 1
            search = _Search(base, width) if searching else None
            if search is not None:
                assert search.started.wait(timeout=1800) and search.error is None, search.error
            for _ in range(clicks_per_block):
                i += 1
                layer, head = rng.randrange(model.cfg.n_layers), rng.randrange(model.cfg.n_heads)
                t0 = time.perf_counter()
                live.send(
                    json.dumps({"id": i, "prompt": prompt, "interventions": {"heads": [[layer, head]]}})
                )
                reply = json.loads(live.recv(timeout=600))
                ms = (time.perf_counter() - t0) * 1e3
                assert reply["type"] == "result" and reply["id"] == i, reply
                with urllib.request.urlopen(base + "/api/attack/status") as r:
                    running = json.loads(r.read())["running"]
                assert running == searching, "the search ended during its block"
                rows.append({"search": searching, "ms": ms, "queue_ms": reply["timings"]["queue_ms"]})
            if search is not None:
                n = len(search.steps)
                search.stop()
                s = search.steps
                searches.append(
                    {
                        "steps_during_block": n,
                        "seconds_per_step": (s[-1]["seconds"] - s[0]["seconds"]) / (len(s) - 1)
                        if len(s) > 1
                        else None,
                    }
                )
            load.append(os.getloadavg()[0])
    with_search = [r["ms"] for r in rows if r["search"]]
    without = [r["ms"] for r in rows if not r["search"]]
    result = {
        "benchmark": "click-to-logits over /ws (one random head ablated per click) with and without a gcg search "
        "running on the same server (blocks alternate)",
        "model": "smollm2-135m",
        "prompt_tokens": int(model.to_tokens(prompt).shape[1]),
        "search": {"method": "gcg", "width": width, "blocks": searches},
        "torch_threads": threads,
        "load_average_1min_per_block": [round(x, 2) for x in load],
        "with_search": _summary(with_search),
        "without_search": _summary(without),
        "with_search_queue_ms": _summary([r["queue_ms"] for r in rows if r["search"]]),
        "targets": {"p95_below_400ms_with_search": _summary(with_search)["p95_ms"] < 400},
    }
    write("attack_latency", result)
    return {"summary": {k: result[k] for k in ("with_search", "without_search", "targets")}}


if __name__ == "__main__":
    print(json.dumps(run()["summary"], indent=1))
