"""Every REST route through FastAPI's test client, each checked against the library on tiny:llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from neuroscope.interventions import Ablate, Steer
from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

BASE = "http://127.0.0.1:8000"
PROMPT = "The cat sat on the mat"


@pytest.fixture
def client(tiny_llama):
    app = create_app(Settings(model="tiny:llama", max_prompt_tokens=64, max_new_tokens=16), model=tiny_llama)
    with TestClient(app, base_url=BASE) as c:
        yield c


@torch.no_grad()
def _next_probs(model, prompt, ivs=()):
    logits = model.run_with_hooks(prompt, interventions=list(ivs))[0, -1].float()
    return logits, torch.softmax(logits, -1)


def test_model_info(client, tiny_llama):
    info = client.get("/api/model").json()
    c = tiny_llama.cfg
    assert info["web"] is False  # no ONNX export served: the nav shows no NeuroScope-Web link
    assert (info["n_layers"], info["n_heads"], info["d_model"], info["d_vocab"]) == (
        c.n_layers,
        c.n_heads,
        c.d_model,
        c.d_vocab,
    )
    assert info["limits"]["max_prompt_tokens"] == 64
    assert client.get("/api/health").json()["status"] == "ok"


def test_run_plain_and_ablated_match_library(client, tiny_llama):
    base = client.post("/api/run", json={"prompt": PROMPT, "top_k": 5}).json()
    logits, probs = _next_probs(tiny_llama, PROMPT)
    assert base["tokens"] == tiny_llama.to_str_tokens(PROMPT)
    assert [t["token_id"] for t in base["top"]] == probs.topk(5).indices.tolist()
    assert base["kl"] == pytest.approx(0.0, abs=1e-7)
    assert base["timings"]["first_layer"] is None
    spec = {"heads": [[1, 2], [1, 0]], "neurons": [[1, 7]], "mlps": [0]}
    out = client.post("/api/run", json={"prompt": PROMPT, "interventions": spec, "top_k": 5}).json()
    ivs = [Ablate(heads=[(1, 2), (1, 0)]), Ablate(neurons=[(1, 7)]), Ablate(hook="blocks.0.hook_mlp_out")]
    new_logits, new_probs = _next_probs(tiny_llama, PROMPT, ivs)
    for t in out["top"]:
        i = t["token_id"]
        assert t["prob"] == pytest.approx(float(new_probs[i]), abs=1e-5)
        assert t["logit"] == pytest.approx(float(new_logits[i]), abs=1e-4)
        assert t["delta_logit"] == pytest.approx(float(new_logits[i] - logits[i]), abs=1e-4)
    assert [t["token_id"] for t in out["top"]] == new_probs.topk(5).indices.tolist()
    assert out["timings"]["cached_baseline"] is True and out["timings"]["first_layer"] == 0
    assert out["kl"] > 0


def test_partial_recompute_reports_layers(client, tiny_llama):
    out = client.post("/api/run", json={"prompt": PROMPT, "interventions": {"heads": [[1, 3]]}}).json()
    assert (
        out["timings"]["first_layer"] == 1
        and out["timings"]["recomputed_layers"] == tiny_llama.cfg.n_layers - 1
    )
    _, probs = _next_probs(tiny_llama, PROMPT, [Ablate(heads=[(1, 3)])])
    assert out["top"][0]["prob"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_attention_grid_and_head(client, tiny_llama):
    grid = client.post("/api/attention", json={"prompt": PROMPT}).json()
    c = tiny_llama.cfg
    assert (grid["n_layers"], grid["n_heads"]) == (c.n_layers, c.n_heads)
    assert len(grid["thumbs"]) == c.n_layers and all(len(r) == c.n_heads for r in grid["thumbs"])
    _, cache = tiny_llama.run_with_cache(PROMPT, names=["blocks.1.attn.hook_pattern"])
    pattern = cache["blocks.1.attn.hook_pattern"][0, 2]
    head = client.post("/api/attention/head", json={"prompt": PROMPT, "layer": 1, "head": 2}).json()
    assert head["tokens"] == tiny_llama.to_str_tokens(PROMPT)
    assert torch.allclose(torch.tensor(head["pattern"]), pattern.float(), atol=1e-4)
    n = len(head["tokens"])
    size = grid["size"]
    assert len(grid["thumbs"][1][2]) == size * size and size == min(n, 24)
    bad = client.post("/api/attention/head", json={"prompt": PROMPT, "layer": 1, "head": 99})
    assert bad.status_code == 422 and "head 99 is out of range" in bad.json()["detail"]


@pytest.mark.parametrize("threshold", [None, 0.0])
def test_head_badges_come_from_the_classifier(tiny_llama, monkeypatch, threshold):
    """The analysis library's labels, each head once with its strongest kind; when the classifier labels
    nothing (tiny random weights at the default thresholds), the same scorer and thresholds on the prompt."""
    import neuroscope.analysis.attention as attention

    if threshold is not None:
        monkeypatch.setattr(attention, "THRESHOLDS", dict.fromkeys(attention.THRESHOLDS, threshold))
    prompt = "aaaa"  # a repeated token: some tiny random heads pass the thresholds on it
    app = create_app(Settings(model="tiny:llama"), model=tiny_llama)
    with TestClient(app, base_url=BASE) as c:
        badges = c.post("/api/attention", json={"prompt": prompt}).json()["badges"]
    best: dict[tuple[int, int], tuple[float, str]] = {}
    for kind, hits in attention.classify_heads(tiny_llama).labels.items():
        for layer, head, score in hits:
            if (layer, head) not in best or score > best[(layer, head)][0]:
                best[(layer, head)] = (score, kind.replace("_", "-"))
    if threshold is None:
        assert best == {}
        # by hand from the prompt's patterns: the strongest kind over its threshold, per head
        n = tiny_llama.cfg.n_layers
        names = [f"blocks.{li}.attn.hook_pattern" for li in range(n)]
        _, cache = tiny_llama.run_with_cache(prompt, names=names)
        ids = tiny_llama.to_tokens(prompt)
        expect = {}
        for li in range(n):
            ours, _ = attention.score_heads(cache[names[li]], ids)
            for kind, per_head in ours.items():
                for h, v in enumerate(per_head.tolist()):
                    if v >= attention.THRESHOLDS[kind] and v > expect.get((li, h), (-1.0, ""))[0]:
                        expect[(li, h)] = (v, kind.replace("_", "-"))
        assert expect  # this prompt does label heads, so the comparison means something
        assert {b["source"] for b in badges} == {"prompt"}
        got = {(b["layer"], b["head"]): (b["score"], b["kind"]) for b in badges}
        assert got.keys() == expect.keys()
        for key, (score, kind) in expect.items():
            assert got[key][1] == kind and got[key][0] == pytest.approx(score, abs=1e-6)
    else:
        assert len(best) == tiny_llama.cfg.n_layers * tiny_llama.cfg.n_heads
        got = {(b["layer"], b["head"]): (b["score"], b["kind"]) for b in badges}
        assert got.keys() == best.keys() and {b["source"] for b in badges} == {"classifier"}
        for key, (score, kind) in best.items():
            assert got[key][1] == kind and got[key][0] == pytest.approx(score)


def test_logit_lens_last_row_is_the_model(client, tiny_llama):
    lens = client.post("/api/lens", json={"prompt": PROMPT}).json()
    logits = tiny_llama(PROMPT)[0].float()
    probs = torch.softmax(logits, -1)
    assert len(lens["layers"]) == tiny_llama.cfg.n_layers + 1
    assert lens["top_ids"][-1] == probs.argmax(-1).tolist()
    assert lens["probs"][-1] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-4)
    ablated = client.post("/api/lens", json={"prompt": PROMPT, "interventions": {"heads": [[0, 1]]}}).json()
    new = torch.softmax(tiny_llama(PROMPT, interventions=[Ablate(heads=[(0, 1)])])[0].float(), -1)
    assert ablated["top_ids"][-1] == new.argmax(-1).tolist()


def test_residual_norms_and_pca(client, tiny_llama):
    res = client.post("/api/residual", json={"prompt": PROMPT}).json()
    _, cache = tiny_llama.run_with_cache(PROMPT)
    n = tiny_llama.cfg.n_layers
    expect = [cache[f"blocks.{i}.hook_resid_pre"][0].norm(dim=-1) for i in range(n)] + [
        cache[f"blocks.{n - 1}.hook_resid_post"][0].norm(dim=-1)
    ]
    assert torch.allclose(torch.tensor(res["norms"]), torch.stack(expect).float(), rtol=1e-4)
    pts = torch.tensor(res["pca"]["points"])
    assert pts.shape == (n + 1, 3) and res["baseline_norms"] is None
    assert sum(res["pca"]["explained"]) == pytest.approx(1.0, abs=1e-4)  # n+1 = 3 points span <= 2 dims
    steered = client.post("/api/residual", json={"prompt": PROMPT, "interventions": {"mlps": [1]}}).json()
    before, after = torch.tensor(res["norms"]), torch.tensor(steered["norms"])
    assert torch.allclose(torch.tensor(steered["baseline_norms"]), before, rtol=1e-5)
    assert torch.allclose(after[:n], before[:n], rtol=1e-5)  # only the row after the ablated MLP changes
    assert not torch.allclose(after[n], before[n], rtol=1e-3)


def test_attribution_sums_to_the_logit(client, tiny_llama):
    out = client.post("/api/attribution", json={"prompt": PROMPT}).json()
    logits = tiny_llama(PROMPT)[0, -1].float().detach()
    assert out["target_id"] == int(logits.argmax())
    total = sum(c["value"] for c in out["components"])
    assert total == pytest.approx(float(logits.max()), abs=1e-3)
    # the heads of a layer add up to its attention output (no attention bias in llama)
    attn = {c["label"]: c["value"] for c in out["components"]}
    assert sum(out["heads"][1]) == pytest.approx(attn["attn1"], abs=1e-3)
    assert len(out["token_scores"]) == len(out["tokens"])
    bad = client.post("/api/attribution", json={"prompt": PROMPT, "target": "two tokens"})
    assert bad.status_code == 422 and "single-token string" in bad.json()["detail"]


@torch.no_grad()
def test_top_neurons_are_the_largest_direct_effects(client, tiny_llama):
    """Each layer's neuron effects (computed here from the library's cache) add up to that layer's MLP
    attribution, and the server lists the largest of them, exactly."""
    out = client.post("/api/attribution", json={"prompt": PROMPT}).json()
    n = tiny_llama.cfg.n_layers
    last = f"blocks.{n - 1}.hook_resid_post"
    _, cache = tiny_llama.run_with_cache(
        PROMPT, names=[last, *[f"blocks.{li}.mlp.hook_post" for li in range(n)]]
    )
    final, u = cache[last][0, -1], tiny_llama.W_U[:, out["target_id"]].float()
    effects = torch.stack(
        [
            cache[f"blocks.{li}.mlp.hook_post"][0, -1].float()
            * (tiny_llama.norm_linear(tiny_llama.W_out(li), final).float() @ u)
            for li in range(n)
        ]
    )
    comps = {c["label"]: c["value"] for c in out["components"]}
    for li in range(n):
        assert float(effects[li].sum()) == pytest.approx(comps[f"mlp{li}"], abs=1e-3)
    k = len(out["neurons"])
    assert k == min(24, effects.numel())
    top = effects.abs().flatten().topk(k).indices
    d_mlp = effects.shape[1]
    assert [(nn["layer"], nn["neuron"]) for nn in out["neurons"]] == [
        (int(i) // d_mlp, int(i) % d_mlp) for i in top
    ]
    for nn in out["neurons"]:
        assert nn["value"] == pytest.approx(float(effects[nn["layer"], nn["neuron"]]), abs=1e-5)
    # ablated, a neuron's own effect is gone
    li, ni = out["neurons"][0]["layer"], out["neurons"][0]["neuron"]
    spec = {"neurons": [[li, ni]]}
    again = client.post("/api/attribution", json={"prompt": PROMPT, "interventions": spec}).json()
    assert (li, ni) not in {(nn["layer"], nn["neuron"]) for nn in again["neurons"] if abs(nn["value"]) > 0}


def test_generate_honours_interventions(client, tiny_llama):
    plain = client.post("/api/generate", json={"prompt": PROMPT, "max_new_tokens": 6}).json()
    assert plain["text"] == tiny_llama.generate(PROMPT, max_new_tokens=6) and plain["baseline"] is None
    spec = {"heads": [[0, 0], [0, 1], [0, 2], [0, 3]]}
    out = client.post(
        "/api/generate", json={"prompt": PROMPT, "max_new_tokens": 6, "interventions": spec}
    ).json()
    ivs = [Ablate(heads=[(0, 0), (0, 1), (0, 2), (0, 3)])]
    assert out["text"] == tiny_llama.generate(PROMPT, max_new_tokens=6, interventions=ivs)
    assert out["baseline"] == plain["text"]
    too_many = client.post("/api/generate", json={"prompt": PROMPT, "max_new_tokens": 200})
    assert too_many.status_code == 422 and "at most 16" in too_many.json()["detail"]


def test_steering_vectors(client, tiny_llama):
    assert client.get("/api/steering/vectors").json() == {"vectors": []}
    made = client.post(
        "/api/steering/vectors", json={"name": "mood", "positive": ["good"], "negative": ["bad"], "layer": 1}
    )
    assert made.status_code == 200 and made.json()["layer"] == 1
    _, pos = tiny_llama.run_with_cache("good", names=["blocks.1.hook_resid_pre"])
    _, neg = tiny_llama.run_with_cache("bad", names=["blocks.1.hook_resid_pre"])
    vec = (pos["blocks.1.hook_resid_pre"][0, -1] - neg["blocks.1.hook_resid_pre"][0, -1]).float()
    assert made.json()["norm"] == pytest.approx(float(vec.norm()), rel=1e-5)
    assert [v["name"] for v in client.get("/api/steering/vectors").json()["vectors"]] == ["mood"]
    out = client.post(
        "/api/run", json={"prompt": PROMPT, "interventions": {"steer": {"vector": "mood", "alpha": 8.0}}}
    ).json()
    _, probs = _next_probs(tiny_llama, PROMPT, [Steer(layer=1, vector=vec, alpha=8.0)])
    assert out["top"][0]["prob"] == pytest.approx(float(probs.max()), abs=1e-5)
    missing = client.post("/api/run", json={"prompt": PROMPT, "interventions": {"steer": {"vector": "nope"}}})
    assert missing.status_code == 404 and "mood" in missing.json()["detail"]


def test_vectors_dir(tiny_llama, tmp_path):
    from neuroscope.errors import CorruptDataError
    from neuroscope.export.vectors import read_vector_store, save_vector

    save_vector(tmp_path, "ones", 1, torch.ones(tiny_llama.cfg.d_model))
    save_vector(tmp_path, "zero", 0, torch.zeros(tiny_llama.cfg.d_model))
    app = create_app(Settings(model="tiny:llama", vectors_dir=str(tmp_path)), model=tiny_llama)
    with TestClient(app, base_url=BASE) as c:
        got = {v["name"]: v["layer"] for v in c.get("/api/steering/vectors").json()["vectors"]}
    assert got == {"ones": 1, "zero": 0}
    # a pickle in the store is refused, never loaded
    (tmp_path / "old.pt").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CorruptDataError, match="safetensors only"):
        read_vector_store(tmp_path)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"prompt": ""}, 422, "at least 1 character"),
        ({"prompt": "x" * 65}, 422, "at most 64"),  # byte-level tokenizer: 65 chars > 64 tokens
        ({"prompt": PROMPT, "interventions": {"heads": [[7, 0]]}}, 422, "layer 7 is out of range"),
        (
            {"prompt": PROMPT, "interventions": {"neurons": [[0, 10_000]]}},
            422,
            "neuron 10000 is out of range",
        ),
        ({"prompt": PROMPT, "interventions": {"bogus": 1}}, 422, "Extra inputs"),
        ({"prompt": PROMPT, "top_k": 0}, 422, "top_k"),
    ],
)
def test_bad_input_gets_a_clear_422(client, body, status, words):
    r = client.post("/api/run", json=body)
    assert r.status_code == status
    assert words in r.json()["detail"]


def test_not_json_and_unknown_route(client):
    r = client.post("/api/run", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    assert client.get("/api/nope").status_code == 404


def test_index_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "NeuroScope" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_openapi_is_committed_and_fresh(client):
    from neuroscope.server.openapi import SPEC, TYPES, render, spec_hash

    text = render(client.get("/openapi.json").json())
    assert SPEC.read_text() == text, (
        "ui/openapi.json is stale: run `python -m neuroscope.server.openapi` then `cd ui && npm run gen:types`"
    )
    stamp = [ln for ln in TYPES.read_text().splitlines()[:3] if "openapi-sha256" in ln]
    assert stamp and stamp[0].split(":")[1].strip() == spec_hash(text), (
        "ui/src/api/schema.d.ts is stale: run `cd ui && npm run gen:types`"
    )
    spec = json.loads(text)
    assert {"WsRequest", "WsResult", "WsError", "WsSuperseded"} <= set(spec["components"]["schemas"])
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes and Path(SPEC).name == "openapi.json"


# Every route of the app -> the test that exercises it (the test's source must name the route's path).
# Other test modules list their own routes in a ROUTE_TESTS dict of the same form; all are collected below.
ROUTE_TESTS = {
    ("GET", "/api/model"): "test_server_api::test_model_info",
    ("GET", "/api/health"): "test_server_api::test_model_info",
    ("POST", "/api/run"): "test_server_api::test_run_plain_and_ablated_match_library",
    ("POST", "/api/generate"): "test_server_api::test_generate_honours_interventions",
    ("POST", "/api/attention"): "test_server_api::test_attention_grid_and_head",
    ("POST", "/api/attention/head"): "test_server_api::test_attention_grid_and_head",
    ("POST", "/api/lens"): "test_server_api::test_logit_lens_last_row_is_the_model",
    ("POST", "/api/residual"): "test_server_api::test_residual_norms_and_pca",
    ("POST", "/api/attribution"): "test_server_api::test_attribution_sums_to_the_logit",
    ("GET", "/api/steering/vectors"): "test_server_api::test_steering_vectors",
    ("POST", "/api/steering/vectors"): "test_server_api::test_steering_vectors",
    ("WS", "/ws"): "test_server_ws::test_reply_matches_library",
    ("GET", "/openapi.json"): "test_server_api::test_openapi_is_committed_and_fresh",
    ("GET", "/"): "test_server_api::test_index_is_served",
    ("GET", "/web"): "test_export_onnx::test_web_routes_serve_the_page_and_the_export",
    ("GET", "/web/"): "test_export_onnx::test_web_routes_serve_the_page_and_the_export",
    ("GET", "/web/{rel:path}"): "test_export_onnx::test_web_routes_serve_the_page_and_the_export",
}


def test_every_route_has_a_test(client):
    """Enumerates ``app.routes``: a new route without an entry above (and a test naming its path) fails."""
    import importlib
    import inspect

    from fastapi.routing import APIRoute, APIWebSocketRoute
    from starlette.routing import Mount, Route

    routes: set[tuple[str, str]] = set()

    def walk(items, prefix: str = "") -> None:
        for r in items:
            if isinstance(r, APIWebSocketRoute):
                routes.add(("WS", prefix + r.path))
            elif isinstance(r, APIRoute | Route):
                routes.update((m, prefix + r.path) for m in r.methods or () if m != "HEAD")
            elif isinstance(r, Mount):  # the built UI: its index is the one page the app serves
                routes.add(("GET", prefix + r.path or "/"))
            elif hasattr(r, "original_router"):  # FastAPI >= 0.165 keeps included routers whole
                walk(r.original_router.routes, prefix + r.include_context.prefix)
            else:
                raise AssertionError(f"unexpected route type {type(r).__name__}: {r!r}"[:300])

    walk(client.app.routes)
    assert len(routes) >= 14, routes
    listed = all_route_tests()
    assert routes - set(listed) == set(), "routes without a test: add one and list it in a ROUTE_TESTS dict"
    assert set(listed) - routes == set(), "ROUTE_TESTS names routes the app no longer has"
    for (method, path), ref in listed.items():
        module, name = ref.split("::")
        fn = getattr(importlib.import_module(module), name, None)  # pytest puts tests/unit on sys.path
        assert fn is not None, f"{method} {path}: no test named {ref}"
        source = inspect.getsource(fn)
        named = path in source or (path == "/ws" and "WS" in source) or (path == "/" and '"/"' in source)
        assert named, f"{method} {path}: {ref} does not request it"


def all_route_tests() -> dict[tuple[str, str], str]:
    """This module's ROUTE_TESTS plus every ``ROUTE_TESTS`` dict of the other unit test modules."""
    import importlib

    found = dict(ROUTE_TESTS)
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        if path.stem == Path(__file__).stem or "ROUTE_TESTS = {" not in path.read_text():
            continue
        for key, ref in importlib.import_module(path.stem).ROUTE_TESTS.items():
            assert key not in found, f"{key} is listed twice ({found[key]} and {ref})"
            found[key] = ref
    return found
