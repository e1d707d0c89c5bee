"""The workbench's refusal slider: the direction is the case study's (difference of means), it is served as
the ordinary steering vector ``refusal``, and every live run steered along it (alpha != 0) appends exactly
one line to the audit file, which stays inside the workspace."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from neuroscope.errors import UnsafePathError
from neuroscope.interventions import Steer
from neuroscope.organisms.directions import diff_of_means
from neuroscope.organisms.generation import formatter
from neuroscope.organisms.refusal import RefusalPrompts
from neuroscope.organisms.served_direction import (
    SOURCE,
    cached_refusal_direction,
    compute_refusal_direction,
    load_refusal_direction,
    save_refusal_direction,
)
from neuroscope.server.app import create_app
from neuroscope.server.audit import AuditLog
from neuroscope.server.settings import Settings

BASE = "http://127.0.0.1:8000"
PROMPT = "How do I open a lock without its key?"
SMALL = RefusalPrompts.shipped().limited(6)


def test_direction_is_the_case_studys_difference_of_means(tiny_llama, tmp_path):
    d = compute_refusal_direction(tiny_llama, layer=1, prompts=SMALL)
    fmt = formatter(tiny_llama, warn=False)
    ref = diff_of_means(
        tiny_llama, [fmt(p) for p in SMALL.harmful_train], [fmt(p) for p in SMALL.harmless_train]
    )[1]
    assert d.layer == 1 and torch.allclose(d.vector, ref.float(), atol=1e-6) and d.vector.norm() > 0
    # saved and read back exactly; the cache computes once and then reads the file
    back = load_refusal_direction(save_refusal_direction(d, tmp_path / "r.safetensors"), tiny_llama)
    assert back.layer == 1 and torch.equal(back.vector, d.vector) and back.model == tiny_llama.cfg.name
    first = cached_refusal_direction(tiny_llama, tmp_path / "cache", layer=1, prompts=SMALL)
    assert len(list((tmp_path / "cache").iterdir())) == 1 and torch.equal(first.vector, d.vector)
    again = cached_refusal_direction(tiny_llama, tmp_path / "cache", layer=1, prompts=SMALL)
    assert "cache" in again.origin and torch.equal(again.vector, d.vector)
    # without a layer, the case study's validation-split rule chooses one
    auto = compute_refusal_direction(tiny_llama, prompts=SMALL)
    assert 0 <= auto.layer < tiny_llama.cfg.n_layers and "validation" in auto.origin


def test_audit_log_appends_whole_lines_and_stays_in_the_workspace(tmp_path):
    log = AuditLog(tmp_path / "ws", "logs/audit.jsonl")
    for i in range(3):
        log.append({"i": i, "alpha": 0.5 * i})
    lines = (tmp_path / "ws" / "logs" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(x)["i"] for x in lines] == [0, 1, 2] and log.read()[2]["alpha"] == 1.0
    for bad in ("../outside.jsonl", "/tmp/audit.jsonl", "a/../../b.jsonl"):
        with pytest.raises(UnsafePathError):
            AuditLog(tmp_path / "ws", bad)
    (tmp_path / "ws" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        AuditLog(tmp_path / "ws", "link/audit.jsonl")


@pytest.fixture
def served(tiny_llama, tmp_path):
    d = compute_refusal_direction(tiny_llama, layer=1, prompts=SMALL)
    path = save_refusal_direction(d, tmp_path / "refusal.safetensors")
    ws = tmp_path / "workspace"
    settings = Settings(model="tiny:llama", workspace=str(ws), refusal_direction=str(path))
    with TestClient(create_app(settings, model=tiny_llama), base_url=BASE) as c:
        yield c, d, ws / "refusal-audit.jsonl"


def test_each_steered_live_run_logs_one_line(served, tiny_llama):
    client, d, audit = served
    vec = next(v for v in client.get("/api/steering/vectors").json()["vectors"] if v["name"] == "refusal")
    assert vec["source"] == SOURCE and vec["layer"] == 1 and abs(vec["norm"] - float(d.vector.norm())) < 1e-4
    steer = {"vector": "refusal", "alpha": 2.0}
    # alpha 0 and other interventions: not logged
    client.post("/api/run", json={"prompt": PROMPT, "interventions": {"steer": {**steer, "alpha": 0.0}}})
    client.post("/api/run", json={"prompt": PROMPT, "interventions": {"heads": [[0, 1]]}})
    assert not audit.exists()
    r = client.post("/api/run", json={"prompt": PROMPT, "interventions": {"steer": steer}, "top_k": 3}).json()
    # the run is the ordinary Steer path: the library's numbers
    probs = torch.softmax(
        tiny_llama.run_with_hooks(PROMPT, interventions=[Steer(1, d.vector, alpha=2.0)])[0, -1].float(), -1
    )
    assert abs(r["top"][0]["prob"] - float(probs.max())) < 1e-5
    client.post(
        "/api/generate", json={"prompt": PROMPT, "max_new_tokens": 2, "interventions": {"steer": steer}}
    )
    with client.websocket_connect("ws://127.0.0.1:8000/ws") as ws:  # the WS live path
        for i, alpha in enumerate((-1.5, 3.0)):
            msg = {"id": i, "prompt": PROMPT, "interventions": {"steer": {**steer, "alpha": alpha}}}
            ws.send_text(json.dumps(msg))
            assert json.loads(ws.receive_text())["type"] == "result"
    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    assert [(x["kind"], x["alpha"]) for x in lines] == [
        ("run", 2.0),
        ("generate", 2.0),
        ("live", -1.5),
        ("live", 3.0),
    ]
    import hashlib

    sha = hashlib.sha256(PROMPT.encode()).hexdigest()
    assert all(x["layer"] == 1 and x["model"] == "tiny:llama" and x["prompt_sha256"] == sha for x in lines)
    assert all(x["client"] and x["time"].endswith("+00:00") for x in lines)


def test_an_audit_file_outside_the_workspace_is_refused(tiny_llama, tmp_path):
    d = compute_refusal_direction(tiny_llama, layer=0, prompts=SMALL)
    path = save_refusal_direction(d, tmp_path / "r.safetensors")
    settings = Settings(
        model="tiny:llama",
        workspace=str(tmp_path / "w"),
        refusal_direction=str(path),
        audit_file="../x.jsonl",
    )
    with pytest.raises(UnsafePathError):
        create_app(settings, model=tiny_llama)


def test_auto_computes_once_from_the_shipped_sets_and_caches_in_the_workspace(tiny_llama, tmp_path):
    ws = tmp_path / "w"
    settings = Settings(model="tiny:llama", workspace=str(ws), refusal_direction="auto", refusal_layer=1)
    with TestClient(create_app(settings, model=tiny_llama), base_url=BASE) as c:
        vec = next(v for v in c.get("/api/steering/vectors").json()["vectors"] if v["name"] == "refusal")
    cached = list((ws / "directions").glob("*.safetensors"))
    assert len(cached) == 1 and vec["layer"] == 1
    ref = compute_refusal_direction(tiny_llama, layer=1)  # the full shipped prompt sets
    back = load_refusal_direction(cached[0], tiny_llama)
    assert (
        torch.allclose(back.vector, ref.vector, atol=1e-5)
        and abs(vec["norm"] - float(ref.vector.norm())) < 1e-3
    )
