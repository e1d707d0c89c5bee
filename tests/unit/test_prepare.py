"""The workbench's prepared SAE suite (neuroscope.prepare) on tiny:llama at tiny size: built end to end, read
from the cache, rebuilt when corrupt or stale, one preparer at a time (flock), resumed after an interruption,
and a clear error when the disk is full. Everything is written under tmp_path."""

from __future__ import annotations

import fcntl
import json
import threading
import time
from pathlib import Path

import pytest
from sae_testutil import write_corpus
from tinymodels import tiny

from neuroscope.edits.fingerprint import model_sha256
from neuroscope.errors import PrepareDiskSpaceError
from neuroscope.prepare.build import build
from neuroscope.prepare.cache import META_FILE, PrepareDirs, check, expected_meta
from neuroscope.prepare.plan import plan_for

TOKENS = 2048


@pytest.fixture(scope="module")
def model():
    return tiny("llama")


def corpus(root: Path) -> str:
    data = root / "corpus"
    data.mkdir(parents=True, exist_ok=True)
    write_corpus(data / "train.jsonl", 60, 0)
    write_corpus(data / "heldout.jsonl", 20, 1)
    (data / "corpus.json").write_text('{"train": "train.jsonl", "heldout": "heldout.jsonl"}')
    return str(data)


def setup(model, tmp_path: Path):
    sha = model_sha256(model)
    plan = plan_for(model.cfg, TOKENS)
    dirs = PrepareDirs.for_model(tmp_path / "prepared", model.cfg.name, sha)
    return sha, plan, dirs, expected_meta(model.cfg.name, sha, plan)


def test_plan_from_the_model_shape(model, smollm_cfg=None):
    plan = plan_for(model.cfg, TOKENS)
    assert plan.feature_layer == model.cfg.n_layers // 2 == 1
    assert plan.layers == (0, 1)  # the feature layer and the ones below it, for provenance depth
    assert plan.tokens % plan.ctx_len == 0 and plan.heldout_tokens >= plan.ctx_len
    # a 30-layer model of smollm2-135m's shape: layer 15 (the README's) with 13 and 14 below it
    from dataclasses import replace

    big = replace(model.cfg, n_layers=30, d_model=576, n_heads=9, n_kv_heads=3, d_head=64, d_mlp=1536)
    p = plan_for(big)
    assert (p.feature_layer, p.layers, p.k, int(p.expansion * 576)) == (15, (13, 14, 15), 64, 4608)
    assert 8_192 <= p.tokens <= 262_144


def test_build_then_cache_hit_then_corrupt_rebuilt(model, tmp_path):
    sha, plan, dirs, want = setup(model, tmp_path)
    data = corpus(tmp_path)
    events: list[dict] = []
    assert build(model, dirs, plan, sha, events.append, data) == "built"
    stages = [e.get("stage") for e in events if e.get("state") == "running"]
    assert {"record train", "record heldout", "train L0", "train L1", "features L1"} <= set(stages)
    fractions = [e["fraction"] for e in events if e.get("state") == "running"]
    assert fractions == sorted(fractions) and fractions[-1] > 0.9
    found = check(dirs, want, model)
    assert found.state == "ready" and found.suite is not None and found.suite.layers == [0, 1]
    assert found.suite.features(1) is not None and len(found.suite.features(1)) == found.suite.sae(1).d_sae
    assert not dirs.work.exists() and not (dirs.suite / "acts").exists()  # committed; recordings dropped

    # a second start: nothing is written
    stamp = (dirs.suite / "L1" / "sae_weights.safetensors").stat().st_mtime_ns
    assert build(model, dirs, plan, sha, events.append, data) == "cached"
    assert (dirs.suite / "L1" / "sae_weights.safetensors").stat().st_mtime_ns == stamp

    # corrupt: a truncated SAE file is found, named, and the suite rebuilt
    (dirs.suite / "L0" / "sae_weights.safetensors").write_bytes(b"\0" * 10)
    bad = check(dirs, want, model)
    assert bad.state == "stale" and "damaged" in bad.reason
    events.clear()
    assert build(model, dirs, plan, sha, events.append, data) == "built"
    notices = [e["message"] for e in events if e.get("state") == "notice"]
    assert any("rebuilt" in n and "damaged" in n for n in notices), notices
    assert check(dirs, want, model).state == "ready"


def test_other_version_or_weights_or_sizes_is_stale(model, tmp_path):
    sha, plan, dirs, want = setup(model, tmp_path)
    dirs.suite.mkdir(parents=True)
    for key, value, words in (
        ("neuroscope", "0.0.1", "NeuroScope version"),
        ("weights_sha256", "0" * 64, "model weights"),
        ("plan", {**want["plan"], "tokens": 4096}, "suite sizes"),
    ):
        (dirs.suite / META_FILE).write_text(json.dumps({**want, key: value}))
        found = check(dirs, want, model)
        assert found.state == "stale" and words in found.reason
    (dirs.suite / META_FILE).write_text("{not json")
    assert "cannot be read" in check(dirs, want, model).reason


def test_interrupted_preparation_resumes_and_is_never_attached(model, tmp_path):
    sha, plan, dirs, want = setup(model, tmp_path)
    data = corpus(tmp_path)

    class Killed(BaseException):
        pass

    def die_in_second_layer(event: dict) -> None:
        if event.get("stage") == "train L1":
            raise Killed()

    with pytest.raises(Killed):
        build(model, dirs, plan, sha, die_in_second_layer, data)
    assert check(dirs, want, model).state == "missing"  # nothing half made is visible
    assert (dirs.work / "L0" / "training.json").exists() and not (dirs.work / "L1" / "training.json").exists()
    trained = (dirs.work / "L0" / "training.json").stat().st_mtime_ns
    events: list[dict] = []
    assert build(model, dirs, plan, sha, events.append, data) == "built"
    assert any(e.get("message") == "resuming an interrupted preparation" for e in events)
    assert "train L0" not in [e.get("stage") for e in events]  # the finished layer is kept, not retrained
    assert (dirs.suite / "L0" / "training.json").stat().st_mtime_ns == trained
    assert check(dirs, want, model).state == "ready"


def test_second_preparer_waits_on_the_lock_then_reads_the_cache(model, tmp_path):
    sha, plan, dirs, want = setup(model, tmp_path)
    data = corpus(tmp_path)
    dirs.root.mkdir(parents=True)
    holder = open(dirs.lock, "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process is preparing
    events: list[dict] = []
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(build(model, dirs, plan, sha, events.append, data)))
    t.start()
    deadline = time.monotonic() + 30
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events and events[0]["state"] == "waiting" and t.is_alive()
    assert not dirs.work.exists()  # the waiting one writes nothing
    # the holder finishes the suite (here: a build of its own under the lock it holds), then lets go
    other = PrepareDirs(tmp_path / "elsewhere")
    build(model, other, plan, sha, lambda e: None, data)
    other.suite.rename(dirs.suite)
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    t.join(60)
    assert out == ["cached"] and not dirs.work.exists()


def test_no_disk_space_is_a_clear_error(model, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    sha, plan, dirs, want = setup(model, tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(PrepareDiskSpaceError, match="needs about .* MB and 0 MB are free.*--no-prepare"):
        build(model, dirs, plan, sha, lambda e: None, corpus(tmp_path))
    assert check(dirs, want, model).state == "missing"
