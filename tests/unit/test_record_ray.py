"""Recording on Ray Data (one local cluster for the module: 2 CPUs, a 200 MiB object store) over the real
corpus with a tiny model: the rows equal the single process's, and a worker or the driver killed mid-run
ends, after a rerun, with every (doc_id, pos) exactly once and every checksum valid."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tinymodels import tiny

from neuroscope.record.distributed import ModelLoad, RayConfig, record_ray
from neuroscope.record.reader import ActivationStore
from neuroscope.record.writer import MANIFEST, TraceConfig, record

HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_mlp_out")
LOAD = ModelLoad("tiny:llama", device="cpu")
# float32 activations; the same record_shard runs in both, one torch thread each: expected bit-equal, and
# checked to this tolerance
RTOL, ATOL = 1e-6, 1e-7


def _cfg(corpus, tokens=3072, shard_tokens=384, batch_size=2):
    return TraceConfig(
        hooks=HOOKS,
        data=str(corpus),
        tokens=tokens,
        ctx_len=64,
        batch_size=batch_size,
        shard_tokens=shard_tokens,
        dtype="float32",
    )


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 << 20,
        configure_logging=False,
        log_to_driver=False,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def single(real_corpus, tmp_path_factory):
    """The single-process recordings the Ray ones must equal, by settings."""
    done = {}

    def get(**kw):
        key = tuple(sorted(kw.items()))
        if key not in done:
            n = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                out = tmp_path_factory.mktemp("single")
                record(tiny("llama"), _cfg(real_corpus, **kw), out, progress=False)
            finally:
                torch.set_num_threads(n)
            done[key] = out
        return done[key]

    return get


def _rows(out):
    table = pq.read_table(sorted(out.glob("shard-*.parquet")))
    order = np.lexsort((table.column("pos").to_numpy(), table.column("doc_id").to_numpy()))
    return table.take(order)


def _assert_same_rows(out, ref):
    a, b = _rows(out), _rows(ref)
    for c in ("doc_id", "pos", "token_id"):
        assert a.column(c).to_pylist() == b.column(c).to_pylist()
    for h in HOOKS:
        x = torch.from_numpy(np.stack(a.column(h).to_numpy(zero_copy_only=False)))
        y = torch.from_numpy(np.stack(b.column(h).to_numpy(zero_copy_only=False)))
        torch.testing.assert_close(x, y, rtol=RTOL, atol=ATOL)


def _assert_exactly_once(out, n_contexts, ctx_len=64):
    store = ActivationStore(out)
    assert store.complete
    assert store.verify(checksums=True) == n_contexts * ctx_len == store.n_tokens
    assert not list(out.glob("*.tmp"))
    assert sorted(p.name for p in out.glob("*.parquet")) == [s["file"] for s in store.shards]
    table = pq.read_table(sorted(out.glob("shard-*.parquet")), columns=["doc_id", "pos"])
    pairs = Counter(zip(table.column("doc_id").to_pylist(), table.column("pos").to_pylist(), strict=True))
    assert set(pairs) == {(d, p) for d in range(n_contexts) for p in range(ctx_len)}
    assert set(pairs.values()) == {1}


def test_ray_rows_equal_the_single_process_rows(cluster, real_corpus, single, tmp_path):
    out = tmp_path / "ray"
    res = record_ray(LOAD, _cfg(real_corpus), out, RayConfig(workers=2, threads_per_worker=1), progress=False)
    assert res.n_shards == res.shards_recorded == 8 and res.tokens == 3072
    ref = single()
    _assert_same_rows(out, ref)
    _assert_exactly_once(out, 48)
    ours, theirs = ActivationStore(out).manifest, ActivationStore(ref).manifest
    for key in ("hooks", "columns", "n_usable_tokens", "special_token_ids", "data_sha256", "complete"):
        assert ours[key] == theirs[key], key
    assert [s["file"] for s in ours["shards"]] == [s["file"] for s in theirs["shards"]]
    # byte for byte the same files: same record_shard, same batches, one torch thread on both sides
    assert [s["sha256"] for s in ours["shards"]] == [s["sha256"] for s in theirs["shards"]]
    # a recording started by one process and finished by the other is one recording
    again = record(tiny("llama"), _cfg(real_corpus), out, progress=False)
    assert again.shards_reused == 8 and again.shards_recorded == 0


def test_a_worker_killed_mid_shard_loses_and_duplicates_nothing(cluster, real_corpus, single, tmp_path):
    out = tmp_path / "ray"
    cfg = _cfg(real_corpus, tokens=6144, shard_tokens=256, batch_size=1)
    result: dict = {}

    def run():
        try:
            result["res"] = record_ray(
                LOAD, cfg, out, RayConfig(workers=2, threads_per_worker=1), progress=False
            )
        except BaseException as e:  # surfaced below
            result["err"] = e

    driver = threading.Thread(target=run)
    driver.start()
    killed = None
    # generous: on a loaded machine the workers' model load alone can take minutes before any shard opens
    t_end = time.monotonic() + 600
    while killed is None and driver.is_alive() and time.monotonic() < t_end:
        # a worker's temp file carries its pid: kill the process that is writing a shard right now
        for tmp in out.glob("shard-*.parquet.*.tmp") if out.exists() else []:
            m = re.search(r"\.(\d+)\.tmp$", tmp.name)
            if m:
                try:
                    os.kill(int(m.group(1)), signal.SIGKILL)
                    killed = int(m.group(1))
                    break
                except ProcessLookupError:
                    pass
        time.sleep(0.002)
    driver.join(timeout=300)
    assert killed is not None, "no worker was caught writing a shard"
    assert "err" not in result, result.get("err")
    assert result["res"].n_shards == 24
    rerun = record_ray(LOAD, cfg, out, RayConfig(workers=2, threads_per_worker=1), progress=False)
    assert rerun.shards_reused == 24 and rerun.shards_recorded == 0
    _assert_exactly_once(out, 96)
    _assert_same_rows(out, single(tokens=6144, shard_tokens=256, batch_size=1))


def _listed(out):
    try:
        m = json.loads((out / MANIFEST).read_text())
        return len(m["shards"]), m["complete"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0, False


def test_a_driver_killed_mid_run_then_rerun_gives_the_clean_result(cluster, real_corpus, single, tmp_path):
    out = tmp_path / "ray"
    argv = [
        sys.executable,
        "-m",
        "neuroscope.cli",
        "trace",
        "--ray",
        "--address",
        cluster,
        "--workers",
        "2",
        "--model",
        "tiny:llama",
        "--device",
        "cpu",
        "--hook",
        HOOKS[0],
        "--hook",
        HOOKS[1],
        "--data",
        str(real_corpus),
        "--tokens",
        "6144",
        "--ctx-len",
        "64",
        "--batch-size",
        "1",
        "--shard-tokens",
        "256",
        "--dtype",
        "float32",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # generous: on a loaded machine the workers' model load alone can take minutes before any shard opens
    t_end = time.monotonic() + 600
    while time.monotonic() < t_end:
        if first.poll() is not None:
            raise AssertionError(
                f"the driver ended before it could be killed: {first.communicate()[1][-3000:]}"
            )
        n, complete = _listed(out)
        if n >= 2 and not complete:
            first.send_signal(signal.SIGKILL)
            first.wait()
            break
        time.sleep(0.005)
    assert first.returncode == -signal.SIGKILL
    listed_at_kill, complete = _listed(out)
    assert 2 <= listed_at_kill < 24 and not complete

    # the rerun starts its own local Ray instance (no --address): the path `trace --ray` takes by default
    i = argv.index("--address")
    second = subprocess.run(argv[:i] + argv[i + 2 :], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    res = json.loads(second.stdout)
    assert res["shards_reused"] >= listed_at_kill and res["shards_reused"] + res["shards_recorded"] == 24
    _assert_exactly_once(out, 96)
    _assert_same_rows(out, single(tokens=6144, shard_tokens=256, batch_size=1))


def test_shard_cursors_start_each_shard_where_one_pass_would(real_corpus):
    from neuroscope.record.datasets import context_cursors, iter_contexts, load_documents

    model = tiny("llama")
    data = real_corpus / "train.jsonl"
    every = list(iter_contexts(load_documents(data), model.tokenizer, 64, 300))
    starts = [0, 1, 37, 150, 299]
    cursors, available = context_cursors(load_documents(data), model.tokenizer, 64, starts, 300)
    assert available >= 300 and sorted(cursors) == starts
    for s in starts:
        got = list(iter_contexts(load_documents(data), model.tokenizer, 64, 300 - s, skip=cursors[s]))
        assert len(got) == 300 - s and all(torch.equal(a, b) for a, b in zip(got, every[s:], strict=True))
    _, short = context_cursors(load_documents(data), model.tokenizer, 64, [0], 10**9)
    assert short < 10**9  # the whole corpus, counted: the driver turns this into the short-corpus error


def test_ray_config_errors():
    from neuroscope.errors import InvalidConfigError

    for bad in ({"workers": 0}, {"cpus_per_worker": 0}, {"gpus_per_worker": -1}, {"object_store_mb": 8}):
        with pytest.raises(InvalidConfigError):
            RayConfig(**bad)
