"""Shared by the tests that talk to `neuroscope ui` in its own process over HTTP and the WebSocket."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import torch

from neuroscope.interventions import Ablate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_ui(*args: str, timeout: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`neuroscope ui --model tiny:llama ARGS` on a free port, offline; yields its http base URL and process once
    /api/health answers, and stops it afterwards. A server that dies while starting fails with its stderr."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # --no-prepare: these servers need no default SAE suite (and must not write to the user's cache)
    cmd = [
        sys.executable,
        "-m",
        "neuroscope.server.cli",
        "--model",
        "tiny:llama",
        "--port",
        str(port),
        "--no-prepare",
    ]
    cmd += list(args)
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base + "/api/health", timeout=5).read()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


@torch.no_grad()
def library_top(model, prompt: str, heads, k: int) -> tuple[list[int], list[float]]:
    """The library's top-k next tokens and probabilities with ``heads`` ablated: what /ws must answer."""
    ivs = [Ablate(heads=[tuple(h) for h in heads])] if heads else []
    probs = torch.softmax(model.run_with_hooks(prompt, interventions=ivs)[0, -1].float(), -1)
    vals, idx = probs.topk(k)
    return idx.tolist(), vals.tolist()
