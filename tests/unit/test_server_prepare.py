"""The workbench prepares its default SAE suite in the background (tiny:llama, tiny size, a tmp cache): the
views that need no SAE serve meanwhile; a kill -9 of the preparing process leaves nothing attached and the
next start resumes it; when ready the Features view and the provenance suite fill in with no restart; a
later start reads the cache; a cache that cannot be written fails clearly while everything else works."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from fastapi.testclient import TestClient
from test_prepare import corpus
from tinymodels import tiny

from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

ROUTE_TESTS = {
    (
        "GET",
        "/api/prepare",
    ): "test_server_prepare::test_killed_preparation_resumes_then_attaches_live_then_reads_the_cache"
}

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return tiny("llama")


def settings(tmp_path, **kw) -> Settings:
    return Settings(
        model="tiny:llama",
        workspace=str(tmp_path / "ws"),
        prepare=True,
        prepare_dir=str(tmp_path / "prepared"),
        prepare_tokens=1024,  # the smallest useful size: this test is about the process, not the SAEs
        prepare_data=corpus(tmp_path),
        **kw,
    )


def wait_for(pred, timeout: float = 180.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def test_killed_preparation_resumes_then_attaches_live_then_reads_the_cache(model, tmp_path):
    app = create_app(settings(tmp_path), model=model)
    with TestClient(app, base_url=BASE) as c:
        prep = app.state.preparer
        assert c.get("/api/prepare").json()["state"] in ("checking", "running")
        # the views that need no SAE serve while it prepares
        assert c.post("/api/run", json={"prompt": "When Mary and John"}).status_code == 200
        assert c.get("/api/features").json()["saes"] == []
        wait_for(lambda: (c.get("/api/prepare").json().get("stage") or "").startswith("train"))
        os.kill(prep._proc.pid, signal.SIGKILL)
        st = prep.wait(60)
        assert st["state"] == "failed" and "code -9" in st["message"]
        assert c.get("/api/features").json()["saes"] == []  # nothing half made is attached
        assert c.get("/api/graphs/suite").status_code == 404
    dirs = prep._dirs
    assert dirs.work.exists() and not dirs.suite.exists()

    app = create_app(settings(tmp_path), model=model)
    with TestClient(app, base_url=BASE) as c:
        st = app.state.preparer.wait(180)
        assert st["state"] == "ready", st
        assert "resuming an interrupted preparation" in st["notices"]
        saes = c.get("/api/features").json()["saes"]
        assert [s["name"] for s in saes] == ["prepared-l1-k64"] and saes[0]["has_features"]
        assert saes[0]["source"] == str(dirs.suite / "L1")
        page = c.get("/api/features/prepared-l1-k64/table?limit=5&sort=density&descending=true").json()
        assert page["total"] == saes[0]["width"] and page["rows"][0]["density"] > 0
        suite = c.get("/api/graphs/suite").json()
        assert suite["layers"] == [0, 1] and suite["path"] == str(dirs.suite)

    app = create_app(settings(tmp_path), model=model)
    with TestClient(app, base_url=BASE) as c:
        st = app.state.preparer.wait(60)
        assert st["state"] == "ready" and st["message"].startswith("read from the cache")
        assert app.state.preparer._proc is None  # no child: nothing recorded or trained again
        assert c.get("/api/features").json()["saes"][0]["name"] == "prepared-l1-k64"


def test_unwritable_cache_fails_clearly_and_the_rest_serves(model, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    s = settings(tmp_path).model_copy(update={"prepare_dir": str(blocker)})
    app = create_app(s, model=model)
    with TestClient(app, base_url=BASE) as c:
        st = app.state.preparer.wait(60)
        assert st["state"] == "failed" and str(blocker) in st["message"]
        assert c.get("/api/prepare").json()["state"] == "failed"
        assert c.post("/api/run", json={"prompt": "When Mary and John"}).status_code == 200


def test_no_prepare_flag_and_given_saes_switch_it_off(tmp_path):
    from neuroscope.cli import build_parser
    from neuroscope.server.cli import settings_from_args
    from neuroscope.server.prepare import wanted

    on = settings_from_args(build_parser().parse_args(["ui"]))
    off = settings_from_args(build_parser().parse_args(["ui", "--no-prepare"]))
    assert on.prepare and wanted(on) and not off.prepare and not wanted(off)
    assert not Settings().prepare  # create_app in tests and notebooks prepares nothing unless asked
    given = Settings(prepare=True, saes=("a",), sae_suite="b")
    assert not wanted(given)
