"""The model worker's queue: live clicks (priority 0) go before a view (priority 1) submitted less than
VIEW_HANDICAP_S earlier, and never before one that has waited longer, so a stream of clicks cannot starve a view."""

from __future__ import annotations

import threading
import time

import neuroscope as ns
from neuroscope.server.worker import VIEW_HANDICAP_S, ModelWorker


def test_views_wait_for_recent_clicks_but_not_for_ever():
    worker = ModelWorker(ns.load_model("tiny:llama", device="cpu"))
    order: list[str] = []
    gate = threading.Event()
    done = threading.Event()
    try:
        worker._submit(0, gate.wait)  # holds the worker thread while the queue fills
        time.sleep(0.05)
        worker._submit(1, lambda: order.append("old view"))
        worker._submit(0, lambda: order.append("click soon after"))
        time.sleep(VIEW_HANDICAP_S + 0.1)
        worker._submit(1, lambda: order.append("new view"))
        worker._submit(0, lambda: order.append("late click"))
        worker._submit(9, done.set)
        gate.set()
        assert done.wait(10)
    finally:
        worker.close()
    assert order == ["click soon after", "old view", "late click", "new view"]
