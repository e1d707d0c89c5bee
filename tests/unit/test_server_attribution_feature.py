"""``GET /api/attribution-graph/feature/{layer}/{feature}`` (the Circuits view's feature detail) on tiny:llama
with tiny random transcoders: the logit effects are the decoder row through the unembedding."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tc_testutil import random_transcoders

from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

ROUTE_TESTS = {
    (
        "GET",
        "/api/attribution-graph/feature/{layer}/{feature}",
    ): "test_server_attribution_feature::test_feature_logit_effects",
}


@pytest.fixture
def client(tiny_llama):
    app = create_app(Settings(model="tiny:llama", max_prompt_tokens=32), model=tiny_llama)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        yield c


def test_feature_logit_effects(client, tiny_llama):
    route = "/api/attribution-graph/feature/{layer}/{feature}"
    r = client.get(route.format(layer=0, feature=3))
    assert r.status_code == 404 and "--transcoders" in r.json()["detail"]
    tcs = random_transcoders(tiny_llama, layers=[0])
    client.app.state.attribution.attach(tcs, "random")
    r = client.get(route.format(layer=0, feature=3))
    assert r.status_code == 200, r.text
    got = r.json()
    logits = tcs[0].W_dec[3].detach().float() @ tiny_llama.W_U.detach().float()
    decode = tiny_llama.tokenizer.decode
    assert got["logit_top_tokens"] == [decode([i]) for i in logits.topk(10).indices.tolist()]
    assert got["logit_bottom_tokens"] == [decode([i]) for i in (-logits).topk(10).indices.tolist()]
    assert got["has_store"] is False and got["layer"] == 0 and got["feature"] == 3
    r = client.get(route.format(layer=1, feature=3))  # no transcoder at layer 1
    assert r.status_code == 404 and "layers [0]" in r.json()["detail"]
    r = client.get(route.format(layer=0, feature=32))  # d_tc is 32
    assert r.status_code == 422 and "feature 32" in r.json()["detail"]
