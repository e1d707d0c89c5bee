"""The attribution-graph routes on tiny:llama with tiny random transcoders, each checked against the library."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from transcoders_testutil import PROMPT, random_transcoders

from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings
from neuroscope.transcoders.attribution import AttributionConfig, attribute
from neuroscope.transcoders.intervene import NodeIntervention, intervene
from neuroscope.transcoders.qk import qk_attribution
from neuroscope.transcoders.replacement import ReplacementModel
from neuroscope.transcoders.workbench import node_document

BASE = "http://127.0.0.1:8000"
ROUTE_TESTS = {
    (
        "GET",
        "/api/attribution-graph/transcoders",
    ): "test_server_attribution::test_no_transcoders_is_a_state_not_a_500",
    ("POST", "/api/attribution-graph/build"): "test_server_attribution::test_build_and_prune",
    ("POST", "/api/attribution-graph/prune"): "test_server_attribution::test_build_and_prune",
    ("POST", "/api/attribution-graph/supernodes"): "test_server_attribution::test_supernodes_and_edits",
    ("POST", "/api/attribution-graph/supernodes/edit"): "test_server_attribution::test_supernodes_and_edits",
    ("POST", "/api/attribution-graph/qk"): "test_server_attribution::test_qk_matches_library",
    ("POST", "/api/attribution-graph/intervene"): "test_server_attribution::test_intervene_matches_library",
    ("WS", "/ws/attribution-graph"): "test_server_attribution::test_ws_interventions",
    (
        "GET",
        "/api/attribution-graph/feature/{layer}/{feature}",
    ): "test_server_attribution::test_feature_detail",
}


@pytest.fixture
def bare(tiny_llama):
    with TestClient(
        create_app(Settings(model="tiny:llama", max_prompt_tokens=32), model=tiny_llama), base_url=BASE
    ) as c:
        yield c


@pytest.fixture
def client(bare, tiny_llama):
    bare.app.state.attribution.attach(random_transcoders(tiny_llama), "random")
    return bare


def built(client) -> dict:
    # random transcoders leave little to features: keep every node (thresholds 1) so features are drawn
    r = client.post(
        "/api/attribution-graph/build", json={"prompt": PROMPT, "node_threshold": 1, "edge_threshold": 1}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_no_transcoders_is_a_state_not_a_500(bare):
    info = bare.get("/api/attribution-graph/transcoders").json()
    assert info["available"] is False and "--transcoders" in info["detail"]
    r = bare.post("/api/attribution-graph/build", json={"prompt": PROMPT})
    assert r.status_code == 404 and "--transcoders" in r.json()["detail"]
    r = bare.post("/api/attribution-graph/qk", json={"prompt": PROMPT, "layer": 1, "head": 0})
    assert r.status_code == 404
    bare.app.state.attribution.attach(random_transcoders(bare.app.state.attribution.model), "random")
    info = bare.get("/api/attribution-graph/transcoders").json()
    assert info["available"] and info["layers"] == [0, 1] and info["d_tc"] == {"0": 96, "1": 96}


def test_build_and_prune(client, tiny_llama):
    out = client.post(
        "/api/attribution-graph/build", json={"prompt": PROMPT, "max_feature_nodes": 500}
    ).json()
    doc = out["graph"]
    rm = ReplacementModel(tiny_llama, client.app.state.attribution.transcoders)
    ref = attribute(rm, PROMPT, AttributionConfig(max_feature_nodes=500, max_tokens=32))
    lib = ref.to_dict(0.8, 0.98)
    assert out["graph_id"] == "g1" and doc["kind"] == "attribution"
    assert [n["id"] for n in doc["nodes"]] == [n["id"] for n in lib["nodes"]]
    assert [e["weight"] for e in doc["edges"]] == pytest.approx([e["weight"] for e in lib["edges"]], rel=1e-5)
    assert doc["meta"]["scores"]["replacement"] == pytest.approx(ref.scores().replacement)
    # the sliders re-prune the held graph: everything at 1, the library's own pruning in between
    full = client.post(
        "/api/attribution-graph/prune", json={"graph_id": "g1", "node_threshold": 1, "edge_threshold": 1}
    ).json()["graph"]
    assert len(full["nodes"]) > len(doc["nodes"]) and any(n["type"] == "feature" for n in full["nodes"])
    mid = client.post(
        "/api/attribution-graph/prune",
        json={"graph_id": "g1", "node_threshold": 0.95, "edge_threshold": 0.99},
    ).json()["graph"]
    assert [n["id"] for n in mid["nodes"]] == [n["id"] for n in ref.to_dict(0.95, 0.99)["nodes"]]
    for bad in ({"node_threshold": 0}, {"edge_threshold": 1.5}, {"node_threshold": -0.1}):
        r = client.post("/api/attribution-graph/prune", json={"graph_id": "g1", **bad})
        assert r.status_code == 422 and "threshold" in r.json()["detail"]
    r = client.post("/api/attribution-graph/build", json={"prompt": PROMPT, "node_threshold": 2})
    assert r.status_code == 422 and "node_threshold" in r.json()["detail"]
    r = client.post("/api/attribution-graph/prune", json={"graph_id": "g99"})
    assert r.status_code == 404 and "build it again" in r.json()["detail"]
    r = client.post("/api/attribution-graph/prune", json={"graph_id": "../etc"})
    assert r.status_code == 422
    r = client.post("/api/attribution-graph/build", json={"prompt": "x" * 80})
    assert r.status_code == 422 and "32" in r.json()["detail"]


def test_supernodes_and_edits(client):
    gid = built(client)["graph_id"]
    out = client.post(
        "/api/attribution-graph/supernodes",
        json={"graph_id": gid, "threshold": 0.3, "node_threshold": 1, "edge_threshold": 1},
    ).json()
    groups = out["spec"]["groups"]
    assert groups and all(len(g["members"]) >= 2 for g in groups)
    edit = {"op": "rename", "id": groups[0]["id"], "name": "says hi"}
    r = client.post(
        "/api/attribution-graph/supernodes/edit", json={"graph_id": gid, "spec": out["spec"], "edit": edit}
    )
    assert r.status_code == 200 and r.json()["spec"]["groups"][0]["name"] == "says hi"
    first = groups[0]["members"][0]
    moved = client.post(
        "/api/attribution-graph/supernodes/edit",
        json={"graph_id": gid, "spec": out["spec"], "edit": {"op": "move", "node": first, "to": None}},
    ).json()
    assert all(first not in g["members"] for g in moved["spec"]["groups"])
    bad = [
        ({"op": "rename", "id": "nope", "name": "x"}, "Unknown supernode"),
        ({"op": "merge", "ids": [groups[0]["id"]]}, "two or more"),
    ]
    for e, msg in bad:
        r = client.post(
            "/api/attribution-graph/supernodes/edit", json={"graph_id": gid, "spec": out["spec"], "edit": e}
        )
        assert r.status_code == 422 and msg in r.json()["detail"]
    foreign = {"groups": [{"id": "x", "name": "x", "members": ["f_0_999_31"]}]}
    r = client.post(
        "/api/attribution-graph/supernodes/edit", json={"graph_id": gid, "spec": foreign, "edit": edit}
    )
    assert r.status_code == 422 and "not feature nodes of this graph" in r.json()["detail"]
    r = client.post("/api/attribution-graph/supernodes", json={"graph_id": gid, "threshold": 0})
    assert r.status_code == 422


def test_qk_matches_library(client, tiny_llama):
    body = {"prompt": PROMPT, "layer": 1, "head": 2, "query_pos": -1, "key_pos": 3, "top": 7}
    out = client.post("/api/attribution-graph/qk", json=body).json()
    ref = qk_attribution(
        tiny_llama, client.app.state.attribution.transcoders, PROMPT, 1, 2, -1, 3, 7
    ).to_dict()
    assert out["score"] == pytest.approx(ref["score"]) and out["pair_sum"] == pytest.approx(
        out["score"], rel=1e-4
    )
    assert [p["query"] for p in out["top_pairs"]] == [p["query"] for p in ref["top_pairs"]]
    assert len(out["query_nodes"]) == 7
    # positions and ids agree with a graph of the same prompt: every active layer-0 feature at the query
    # position is a node of the graph, under the same id
    graph = built(client)
    ids = {
        n["id"] for n in node_document(client.app.state.attribution.held(graph["graph_id"]).graph)["nodes"]
    }
    everything = client.post("/api/attribution-graph/qk", json={**body, "top": 200}).json()
    feats = [n["id"] for n in everything["query_nodes"] if n["kind"] == "feature"]
    assert feats and set(feats) <= ids and out["tokens"] == graph["graph"]["tokens"]
    for bad, msg in (
        ({"query_pos": 99}, "query position"),
        ({"key_pos": -99}, "key position"),
        ({"query_pos": 2, "key_pos": 4}, "after query position"),
        ({"head": 9}, "head"),
        ({"layer": 5}, "layer"),
        ({"prompt": "x" * 80}, "limited to 32 tokens"),
    ):
        r = client.post("/api/attribution-graph/qk", json={**body, **bad})
        assert r.status_code == 422 and msg in r.json()["detail"], (bad, r.text)


def _a_feature(doc: dict) -> dict:
    return next(n for n in doc["nodes"] if n["type"] == "feature" and n["layer"] == 0)


def test_intervene_matches_library(client, tiny_llama):
    out = built(client)
    node = _a_feature(out["graph"])
    body = {"graph_id": out["graph_id"], "interventions": [{"node": node["id"]}], "top_k": 5}
    r = client.post("/api/attribution-graph/intervene", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    service = client.app.state.attribution
    nodes = node_document(service.held(out["graph_id"]).graph)  # every node of the unpruned graph
    ref = intervene(tiny_llama, service.transcoders, PROMPT, [NodeIntervention(node["id"])], nodes, top_k=5)
    ref = ref.to_dict()
    assert [t["prob"] for t in got["top_after"]] == pytest.approx([t["prob"] for t in ref["top_after"]])
    assert [t["prob"] for t in got["top_after"]] != pytest.approx([t["prob"] for t in got["top_before"]])
    assert [d["id"] for d in got["downstream"]] == [d["id"] for d in ref["downstream"]]
    for iv, status, msg in (
        ({"node": "f_0_999_3"}, 422, "not in"),
        ({"node": "t_0"}, 422, "feature and error"),
        ({"node": node["id"], "mode": "explode"}, 422, "mode"),
        ({"node": "sn0"}, 422, "is not in this attribution graph"),
    ):
        r = client.post("/api/attribution-graph/intervene", json={**body, "interventions": [iv]})
        assert r.status_code == status and msg in r.json()["detail"], (iv, r.text)
    r = client.post("/api/attribution-graph/intervene", json={**body, "graph_id": "g42"})
    assert r.status_code == 404


def test_ws_interventions(client):
    out = built(client)
    node = _a_feature(out["graph"])
    spec = {"groups": [{"id": "sn0", "name": "pair", "members": [node["id"]]}]}
    with client.websocket_connect("ws://127.0.0.1:8000/ws/attribution-graph") as ws:
        msg = {
            "type": "intervene",
            "id": 1,
            "graph_id": out["graph_id"],
            "interventions": [{"node": "sn0", "mode": "scale", "value": 3.0}],
            "spec": spec,
        }
        ws.send_json(msg)
        reply = ws.receive_json()
        assert reply["type"] == "result" and reply["id"] == 1, reply
        assert reply["applied"] == [{"node": node["id"], "mode": "scale", "value": 3.0}]
        ws.send_json({**msg, "id": 2, "interventions": [{"node": "f_x"}]})
        err = ws.receive_json()
        assert err["type"] == "error" and err["id"] == 2 and err["status"] == 422
        ws.send_text("{not json")
        assert ws.receive_json()["status"] == 422
        # a burst: every request is answered once, older queued ones may be superseded, the newest runs
        for i in range(10, 16):
            ws.send_json(
                {**msg, "id": i, "interventions": [{"node": node["id"], "mode": "scale", "value": i}]}
            )
        answered: dict = {}
        while 15 not in answered:
            reply = ws.receive_json()
            answered[reply["id"]] = reply
        assert set(answered) == set(range(10, 16)) and {r["type"] for r in answered.values()} <= {
            "result",
            "superseded",
        }
        assert answered[15]["type"] == "result" and answered[15]["applied"][0]["value"] == 15


def saved_transcoders(model, folder, model_name=None):
    from neuroscope.transcoders.io import save_transcoder, write_manifest

    tcs = random_transcoders(model)
    for tc in tcs.transcoders.values():
        save_transcoder(tc, folder)
    cfg = tcs[0].cfg
    if model_name is not None:
        from dataclasses import replace

        cfg = replace(cfg, model_name=model_name)
    write_manifest(folder, cfg, tcs.layers)
    return tcs


def test_transcoders_folder_option_and_env(tiny_llama, tmp_path, monkeypatch):
    import argparse

    from neuroscope.errors import TranscoderMismatchError
    from neuroscope.server.cli import register, settings_from_args

    saved_transcoders(tiny_llama, tmp_path / "tcs")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ui", "--model", "tiny:llama", "--transcoders", str(tmp_path / "tcs")])
    settings = settings_from_args(args)
    assert settings.transcoders == str(tmp_path / "tcs")
    monkeypatch.setenv("NEUROSCOPE_TRANSCODERS", str(tmp_path / "tcs"))
    assert Settings(model="tiny:llama").transcoders == str(tmp_path / "tcs")
    with TestClient(create_app(settings, model=tiny_llama), base_url=BASE) as c:
        info = c.get("/api/attribution-graph/transcoders").json()
        assert info["available"] and info["path"] == str(tmp_path / "tcs") and info["layers"] == [0, 1]
        r = c.post("/api/attribution-graph/qk", json={"prompt": PROMPT, "layer": 1, "head": 0})
        assert r.status_code == 200 and r.json()["pair_sum"] == pytest.approx(r.json()["score"], rel=1e-4)
    # another model's transcoders are refused by name when the server starts
    saved_transcoders(tiny_llama, tmp_path / "other", model_name="tiny:gpt2")
    with pytest.raises(TranscoderMismatchError, match="tiny:gpt2"):
        create_app(Settings(model="tiny:llama", transcoders=str(tmp_path / "other")), model=tiny_llama)


def test_feature_detail(client, tiny_llama):
    out = built(client)
    node = _a_feature(out["graph"])
    l, f = node["layer"], node["feature"]
    # GET /api/attribution-graph/feature/{layer}/{feature}
    r = client.get(f"/api/attribution-graph/feature/{l}/{f}", params={"graph_id": out["graph_id"], "k": 4})
    d = r.json()
    tc = client.app.state.attribution.transcoders[l]
    top = (tc.W_dec[f].float() @ tiny_llama.W_U.float()).topk(4)
    assert [t["value"] for t in d["promoted"]] == pytest.approx(top.values.tolist(), rel=1e-5)
    assert d["activations"][node["pos"]] == pytest.approx(node["activation"], rel=1e-5)
    _, cache = tiny_llama.run_with_cache(PROMPT, names=["blocks.0.ln2.hook_normalized"])
    acts = tc.encode(cache["blocks.0.ln2.hook_normalized"][0])[:, f]
    assert l == 0 and d["tokens"] == out["graph"]["tokens"]
    # every position but the prepended special token, which graphs leave out
    assert d["activations"][1:] == pytest.approx(acts[1:].tolist(), rel=1e-4, abs=1e-6)
    assert client.get(f"/api/attribution-graph/feature/{l}/{f}").json()["activations"] is None
    assert client.get(f"/api/attribution-graph/feature/{l}/999").status_code == 422
    assert client.get(f"/api/attribution-graph/feature/7/{f}").status_code == 422
    assert (
        client.get(f"/api/attribution-graph/feature/{l}/{f}", params={"graph_id": "g77"}).status_code == 404
    )


def test_feature_detail_reads_the_feature_store(tmp_path, tiny_llama, real_corpus):
    """Transcoders trained with --features: the detail has the store's statistics and top contexts."""
    from neuroscope.cli import main
    from neuroscope.transcoders.features import transcoder_features

    out = tmp_path / "tcs"
    args = ["train-transcoders", "--model", "tiny:llama", "--layers", "1", "--tokens", "256"]
    args += ["--heldout-tokens", "128", "--ctx-len", "32", "--d-tc", "32", "--k", "4", "--batch-size", "64"]
    assert main([*args, "--data", str(real_corpus), "--out", str(out), "--no-progress", "--features"]) == 0
    settings = Settings(model="tiny:llama", max_prompt_tokens=32, transcoders=str(out))
    with TestClient(create_app(settings, model=tiny_llama), base_url=BASE) as c:
        store = transcoder_features(out, 1)
        f = int(store.cols["density"].argmax())
        d = c.get(f"/api/attribution-graph/feature/1/{f}").json()
    assert d["has_store"] and d["density"] == pytest.approx(float(store.cols["density"][f]))
    assert d["contexts"] and d["contexts"][0]["activation"] == pytest.approx(
        float(store.contexts(f)[0]["activation"])
    )
