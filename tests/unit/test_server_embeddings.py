"""The embedding explorer's routes return the library's numbers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from neuroscope.analysis import embeddings
from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

BASE = "http://127.0.0.1"

ROUTE_TESTS = {
    ("POST", "/api/embeddings/map"): "test_server_embeddings::test_map_route_equals_library",
    ("POST", "/api/embeddings/neighbours"): "test_server_embeddings::test_neighbours_and_analogy_routes",
    ("POST", "/api/embeddings/analogy"): "test_server_embeddings::test_neighbours_and_analogy_routes",
}


@pytest.fixture
def client(tiny_llama):
    app = create_app(Settings(model="tiny:llama"), model=tiny_llama)
    with TestClient(app, base_url=BASE) as c:
        yield c


def test_map_route_equals_library(client, tiny_llama):
    words = ["king", "queen", "man", "woman"]
    r = client.post("/api/embeddings/map", json={"words": words})
    assert r.status_code == 200, r.text
    lib = embeddings.embedding_map(tiny_llama, words).to_dict()
    got = r.json()
    assert got["clusters"] == lib["clusters"] and got["words"] == lib["words"]
    for a, b in zip(got["coords"] + got["similarity"], lib["coords"] + lib["similarity"], strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    bad = client.post("/api/embeddings/map", json={"words": ["lonely"]})
    assert bad.status_code == 422
    bad = client.post("/api/embeddings/map", json={"words": ["a", "   "]})
    assert bad.status_code == 422 and "at least two words" in bad.json()["detail"]


def test_neighbours_and_analogy_routes(client, tiny_llama):
    r = client.post("/api/embeddings/neighbours", json={"word": "king", "k": 5})
    assert r.status_code == 200, r.text
    lib = embeddings.word_neighbours(tiny_llama, "king", 5)
    assert [n["token_id"] for n in r.json()["neighbours"]] == [i for _, i, _ in lib.neighbours]
    r = client.post(
        "/api/embeddings/analogy", json={"a": "king", "b": "man", "c": "woman", "expected": "queen"}
    )
    assert r.status_code == 200, r.text
    lib2 = embeddings.analogy(tiny_llama, "king", "man", "woman", "queen")
    body = r.json()
    assert body["expected_rank"] == lib2.expected_rank
    assert [n["token_id"] for n in body["ranked"]] == [i for _, i, _ in lib2.ranked]
    assert body["offset_cosine"] == pytest.approx(lib2.offset_cosine, abs=1e-6)
