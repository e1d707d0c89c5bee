"""``kill -9`` a real ``neuroscope trace`` process mid-recording, run the same command again, and check the
result is exactly that of an uninterrupted run: every (doc_id, pos) once, exact counts, equal activations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import torch

from neuroscope.record.reader import ActivationStore
from neuroscope.record.writer import MANIFEST, TraceConfig, record

# The real CLI, with a pause after each row group written so that the kill lands mid-shard whatever the
# machine's speed; the code that writes, renames and resumes is the shipped one, untouched.
WRAPPER = """
import sys, time
from neuroscope.record import writer
_write = writer._ShardWriter.write
def slow_write(self, table):
    _write(self, table)
    time.sleep(float(sys.argv[1]))
writer._ShardWriter.write = slow_write
from neuroscope.cli import main
sys.exit(main(sys.argv[2:]))
"""
HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_mlp_out")


def _argv(data, out):
    return [
        "trace",
        "--model",
        "tiny:llama",
        "--layer",
        "0",
        "--hook",
        "resid_post",
        "--hook",
        "blocks.1.hook_mlp_out",
        "--data",
        str(data),
        "--tokens",
        "1536",
        "--ctx-len",
        "32",
        "--batch-size",
        "2",
        "--shard-tokens",
        "128",
        "--dtype",
        "float32",
        "--out",
        str(out),
        "--threads",
        "1",
        "--no-progress",
    ]


def _start(data, out, delay):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", WRAPPER, str(delay), *_argv(data, out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _listed(out):
    try:
        return len(json.loads((out / MANIFEST).read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def _kill_when(proc, out, min_listed, timeout=120.0):
    """SIGKILL once the manifest lists ``min_listed`` shards and the next shard is half written."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise AssertionError(f"trace finished before it could be killed: {proc.communicate()}")
        if _listed(out) >= min_listed and list(out.glob("*.parquet.tmp")):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("trace made no progress")


def test_kill_9_then_same_command_gives_the_clean_result(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the", "model", "reads", "every", "token", "and", "writes", "a", "residual", "stream"]
    data = tmp_path / "text.txt"
    data.write_text("\n\n".join(" ".join(rng.choice(words, 40)) for _ in range(40)))
    out = tmp_path / "acts"

    first = _start(data, out, delay=0.15)
    _kill_when(first, out, min_listed=1)
    assert first.returncode == -signal.SIGKILL
    listed_after_kill = _listed(out)
    assert 1 <= listed_after_kill < 12 and not json.loads((out / MANIFEST).read_text())["complete"]

    second = _start(data, out, delay=0.15)  # killed again, while resuming
    _kill_when(second, out, min_listed=listed_after_kill + 1)
    assert second.returncode == -signal.SIGKILL

    final = _start(data, out, delay=0)
    stdout, stderr = final.communicate(timeout=180)
    assert final.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["shards_reused"] >= 2 and result["shards_reused"] + result["shards_recorded"] == 12

    # the uninterrupted reference, recorded in this process
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from tinymodels import tiny

        cfg = TraceConfig(
            hooks=HOOKS,
            data=str(data),
            tokens=1536,
            ctx_len=32,
            batch_size=2,
            shard_tokens=128,
            dtype="float32",
        )
        record(tiny("llama"), cfg, tmp_path / "clean", progress=False)
    finally:
        torch.set_num_threads(n)

    store, clean = ActivationStore(out), ActivationStore(tmp_path / "clean")
    assert store.complete and store.n_tokens == clean.n_tokens == 1536 == store.verify(checksums=True)
    assert [s["rows"] for s in store.shards] == [s["rows"] for s in clean.shards] == [128] * 12
    assert store.manifest["n_usable_tokens"] == clean.manifest["n_usable_tokens"]
    assert not list(out.glob("*.tmp"))
    assert sorted(p.name for p in out.glob("*.parquet")) == [s["file"] for s in store.shards]
    table = pq.read_table(sorted(out.glob("*.parquet")))
    pairs = Counter(zip(table.column("doc_id").to_pylist(), table.column("pos").to_pylist(), strict=True))
    assert set(pairs) == {(d, p) for d in range(48) for p in range(32)} and set(pairs.values()) == {1}
    for hook in HOOKS:
        a, b = store.read_all(hook), clean.read_all(hook)
        assert (
            torch.equal(a.doc_id, b.doc_id)
            and torch.equal(a.pos, b.pos)
            and torch.equal(a.token_id, b.token_id)
        )
        torch.testing.assert_close(a.acts, b.acts, rtol=1e-5, atol=1e-6)
