"""The graph routes on tiny:llama with an SAE suite attached, each checked against the library."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from graphs_testutil import PROMPT, trained_suite

from neuroscope.graphs.circuits import CircuitConfig, find_circuit, load_task
from neuroscope.graphs.provenance import ProvenanceConfig, provenance
from neuroscope.sae.suite import SAESuite
from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

BASE = "http://127.0.0.1:8000"
ROUTE_TESTS = {
    ("GET", "/api/graphs/suite"): "test_server_graphs::test_suite_top_features_and_feature",
    ("POST", "/api/graphs/top-features"): "test_server_graphs::test_suite_top_features_and_feature",
    (
        "GET",
        "/api/graphs/feature/{layer}/{feature}",
    ): "test_server_graphs::test_suite_top_features_and_feature",
    ("POST", "/api/graphs/provenance"): "test_server_graphs::test_provenance_route_matches_library",
    ("POST", "/api/graphs/circuit"): "test_server_graphs::test_circuit_route_matches_library",
}


@pytest.fixture
def client(tiny_llama):
    settings = Settings(model="tiny:llama", max_prompt_tokens=64, sae_suite=str(trained_suite()))
    with TestClient(create_app(settings, model=tiny_llama), base_url=BASE) as c:
        yield c


def test_suite_top_features_and_feature(client, tiny_llama):
    info = client.get("/api/graphs/suite").json()
    assert info["layers"] == [0, 1] and info["hook"] == "resid_post" and info["has_features"]["1"]
    top = client.post("/api/graphs/top-features", json={"prompt": PROMPT, "layer": 1, "k": 5}).json()
    suite = SAESuite.load(trained_suite(), tiny_llama)
    _, cache = tiny_llama.run_with_cache(PROMPT, names=["blocks.1.hook_resid_post"])
    z = suite.sae(1).encode(cache["blocks.1.hook_resid_post"][0, -1].float())
    assert [r["feature"] for r in top["features"]] == z.topk(len(top["features"])).indices.tolist()
    assert top["position"] == len(top["tokens"]) - 1
    f = top["features"][0]["feature"]
    # GET /api/graphs/feature/{layer}/{feature}
    detail = client.get(f"/api/graphs/feature/1/{f}").json()
    store = suite.features(1)
    assert detail["top_tokens"] == list(store.feature(f)["top_tokens"])
    assert detail["density"] == pytest.approx(store.feature(f)["density"])
    assert client.get("/api/graphs/feature/1/99999").status_code == 422
    assert client.get("/api/graphs/feature/7/0").status_code == 422  # no SAE at layer 7


def test_provenance_route_matches_library(client, tiny_llama):
    suite = SAESuite.load(trained_suite(), tiny_llama)
    body = {"prompt": PROMPT, "layer": 1, "feature": 3, "position": -2, "depth": 2}
    doc = client.post("/api/graphs/provenance", json=body).json()
    ref = provenance(tiny_llama, suite, 1, 3, PROMPT, -2, ProvenanceConfig(depth=2)).to_dict()
    assert doc["kind"] == "provenance" and doc["schema"] == "neuroscope-graph/1"
    assert [n["id"] for n in doc["nodes"]] == [n["id"] for n in ref["nodes"]]
    assert [e["weight"] for e in doc["edges"]] == pytest.approx([e["weight"] for e in ref["edges"]], rel=1e-5)
    # bad input: named errors as 422s with the reason
    r = client.post("/api/graphs/provenance", json={**body, "depth": 5})
    assert r.status_code == 422 and "depth must be in 1..4" in r.json()["detail"]
    r = client.post("/api/graphs/provenance", json={**body, "feature": 10**6})
    assert r.status_code == 422 and "feature" in r.json()["detail"]
    r = client.post("/api/graphs/provenance", json={**body, "layer": 5})
    assert r.status_code == 422 and "no SAE at layer 5" in r.json()["detail"]
    r = client.post("/api/graphs/provenance", json={**body, "prompt": "x " * 80})
    assert r.status_code == 422 and "64" in r.json()["detail"]


def test_circuit_route_matches_library(client, tiny_llama):
    body = {"task": "ioi", "edges": 5, "steps": 1, "sizes": [5], "random_draws": 1, "max_pairs": 2}
    # the shipped IOI prompts have multi-token names for a byte tokenizer: a named 422
    r = client.post("/api/graphs/circuit", json=body)
    assert r.status_code == 422 and "pair 0" in r.json()["detail"]
    r = client.post("/api/graphs/circuit", json={**body, "task": "other"})
    assert r.status_code == 422 and "ioi" in r.json()["detail"]
    r = client.post("/api/graphs/circuit", json={**body, "task": "../etc"})
    assert r.status_code == 422


def test_circuit_route_on_a_served_task(tiny_llama, monkeypatch):
    """A task the tiny tokenizer can read, served under the shipped name through the same route."""
    from graphs_testutil import tiny_task

    import neuroscope.graphs.circuits as circuits

    real = circuits.load_task
    monkeypatch.setattr(circuits, "load_task", lambda model, name: real(model, tiny_task()))
    settings = Settings(model="tiny:llama", max_prompt_tokens=64)
    with TestClient(create_app(settings, model=tiny_llama), base_url=BASE) as client:
        body = {"task": "ioi", "edges": 6, "steps": 2, "sizes": [3, 6], "random_draws": 1, "max_pairs": 3}
        doc = client.post("/api/graphs/circuit", json=body).json()
        again = client.post("/api/graphs/circuit", json=body).json()
        assert client.get("/api/graphs/suite").status_code == 404  # no suite attached here
    task = load_task(tiny_llama, tiny_task())
    task = circuits.Task(task.name, task.description, task.pairs[:3])
    ref = find_circuit(
        tiny_llama, task, CircuitConfig(edges=6, steps=2, sizes=(3, 6), random_draws=1)
    ).to_dict()
    assert doc == again  # kept per configuration
    assert [(e["source"], e["target"]) for e in doc["edges"]] == [
        (e["source"], e["target"]) for e in ref["edges"]
    ]
    curve = doc["meta"]["faithfulness_curve"]
    assert [c["faithfulness"] for c in curve] == pytest.approx(
        [c["faithfulness"] for c in ref["meta"]["faithfulness_curve"]]
    )
