"""Shared by the tests that talk to `neuroscope ui` in its own process over HTTP and the WebSocket."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator

import torch
from benchmarks.soak import serve

from neuroscope.interventions import Ablate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_ui(*args: str, timeout: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`neuroscope ui --model tiny:llama ARGS` on a free port, offline; yields its http base URL and process once
    /api/health answers, and stops it afterwards. A server that dies while starting fails with its stderr."""
    # --no-prepare: these servers need no default SAE suite (and must not write to the user's cache)
    with serve("tiny:llama", "--no-prepare", *args, timeout=timeout) as served:
        yield served


@torch.no_grad()
def library_top(model, prompt: str, heads, k: int) -> tuple[list[int], list[float]]:
    """The library's top-k next tokens and probabilities with ``heads`` ablated: what /ws must answer."""
    ivs = [Ablate(heads=[tuple(h) for h in heads])] if heads else []
    probs = torch.softmax(model.run_with_hooks(prompt, interventions=ivs)[0, -1].float(), -1)
    vals, idx = probs.topk(k)
    return idx.tolist(), vals.tolist()
