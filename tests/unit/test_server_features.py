"""The Features view's routes, each checked against the library on tiny:llama with a small trained SAE."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
import torch
from edits_testutil import fresh
from fastapi.testclient import TestClient

from neuroscope.edits.host import EditHost
from neuroscope.lab.live import LiveEdits, run_with_edits
from neuroscope.sae.contrast import ContrastConfig, contrast_features
from neuroscope.sae.features import FeatureConfig, FeatureStore, compute_features
from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

BASE = "http://127.0.0.1:8000"
PROMPT = "the residual stream of a model carries features"
ROUTE_TESTS = {
    ("GET", "/api/features"): "test_server_features::test_sae_list_and_table",
    ("GET", "/api/features/{sae}/table"): "test_server_features::test_sae_list_and_table",
    ("GET", "/api/features/{sae}/feature/{feature}"): "test_server_features::test_feature_detail",
    ("POST", "/api/features/{sae}/prompt"): "test_server_features::test_prompt_activations",
    ("PUT", "/api/features/{sae}/label"): "test_server_features::test_labels_are_saved_and_searchable",
    ("POST", "/api/features/{sae}/contrast"): "test_server_features::test_contrast_route",
    ("GET", "/api/edits"): "test_server_features::test_edits_change_only_this_request",
    ("POST", "/api/edits"): "test_server_features::test_edits_change_only_this_request",
    ("POST", "/api/export"): "test_server_features::test_export_and_download",
    ("GET", "/api/export/{name}.zip"): "test_server_features::test_export_and_download",
}


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    """The unit tier's trained tiny SAE (sae_testutil) with its feature store, in one folder."""
    import shutil

    from sae_testutil import stores, trained

    sae, _, folder = trained()
    out = tmp_path_factory.mktemp("sae") / "tiny-l1"
    shutil.copytree(folder, out)
    compute_features(
        sae, stores()[1], fresh("llama"), out / "features", FeatureConfig(top_contexts=5, n_examples=16)
    )
    return out


@pytest.fixture
def setup(sae_dir, tmp_path):
    torch.set_num_threads(1)
    model = fresh("llama")
    settings = Settings(
        model="tiny:llama", saes=(str(sae_dir),), workspace=str(tmp_path / "ws"), max_prompt_tokens=64
    )
    app = create_app(settings, model=model)
    with TestClient(app, base_url=BASE) as c:
        yield c, model, app.state.lab


def test_sae_list_and_table(setup, sae_dir):
    # routes: /api/features, /api/features/{sae}/table
    client, _, lab = setup
    saes = client.get("/api/features").json()["saes"]
    assert [s["name"] for s in saes] == ["tiny-l1"] and saes[0]["has_features"] and saes[0]["width"] == 256
    store = FeatureStore(sae_dir / "features")
    page = client.get(
        "/api/features/tiny-l1/table", params={"sort": "density", "descending": True, "limit": 7, "offset": 3}
    ).json()
    rows, total = store.page(3, 7, "density", True)
    assert total == 256 == page["total"] and [r["id"] for r in page["rows"]] == [r["id"] for r in rows]
    word = store.top_tokens[int(rows[0]["id"])][0].strip()
    hit = client.get("/api/features/tiny-l1/table", params={"search": word}).json()
    assert hit["total"] == store.page(0, 10, search=word)[1] > 0
    assert client.get("/api/features/nope/table").status_code == 404
    assert client.get("/api/features/tiny-l1/table", params={"sort": "label"}).status_code == 422


def test_feature_detail(setup, sae_dir):
    # route: /api/features/{sae}/feature/{feature}
    client, model, lab = setup
    store = FeatureStore(sae_dir / "features")
    f = int(store.page(0, 1, "max_activation", True)[0][0]["id"])
    d = client.get(f"/api/features/tiny-l1/feature/{f}").json()
    row = store.feature(f)
    assert [c["token"] for c in d["cloud"]] == row["top_tokens"]
    assert d["stats"]["density"] == pytest.approx(row["density"])
    sae = lab.get("tiny-l1").sae
    top = (sae.W_dec[f].detach() @ model.W_U.float()).topk(10)
    assert [t["value"] for t in d["logits"]["promoted"]] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert len(d["contexts"]) == len(store.contexts(f)) > 0
    c0 = d["contexts"][0]
    assert len(c0["acts"]) == len(c0["tokens"]) and c0["activation"] == pytest.approx(
        store.contexts(f)[0]["activation"], abs=1e-5
    )
    assert max(c0["acts"]) > 0  # the feature fires in its own top context when re-run
    h = d["histogram"]
    assert sum(h["counts"]) + h["dead"] == 256 and h["bin"] is not None
    assert client.get("/api/features/tiny-l1/feature/256").status_code == 422


def test_prompt_activations(setup):
    # route: /api/features/{sae}/prompt
    client, model, lab = setup
    out = client.post(
        "/api/features/tiny-l1/prompt", json={"prompt": PROMPT, "feature": 5, "position": 4}
    ).json()
    sae = lab.get("tiny-l1").sae
    _, cache = model.run_with_cache(PROMPT, names=[sae.cfg.hook_name])
    z = sae.encode(cache[sae.cfg.hook_name])[0]
    assert out["tokens"] == model.to_str_tokens(PROMPT)
    assert out["acts"][0] == 0.0 and out["acts"][1:] == pytest.approx(z[1:, 5].tolist(), abs=1e-4)
    active = out["active"]
    assert [a["activation"] for a in active] == sorted((a["activation"] for a in active), reverse=True)
    assert active[0]["feature"] == int(z[4].argmax()) and len(active) == int((z[4] > 0).sum())
    bad = client.post("/api/features/tiny-l1/prompt", json={"prompt": PROMPT, "position": 999})
    assert bad.status_code == 422 and "outside the prompt" in bad.json()["detail"]


def test_labels_are_saved_and_searchable(setup, tmp_path):
    # route: /api/features/{sae}/label
    client, _, lab = setup
    r = client.put("/api/features/tiny-l1/label", json={"feature": 17, "label": "Residual words"}).json()
    assert r == {"sae": "tiny-l1", "feature": 17, "label": "Residual words"}
    saved = json.loads((tmp_path / "ws" / "labels.json").read_text())
    assert saved == {"tiny-l1": {"17": "Residual words"}}
    hit = client.get("/api/features/tiny-l1/table", params={"search": "residual WORDS"}).json()
    assert (
        17 in [row["id"] for row in hit["rows"]]
        and hit["rows"][[row["id"] for row in hit["rows"]].index(17)]["label"] == "Residual words"
    )
    assert (
        client.put("/api/features/tiny-l1/label", json={"feature": 17, "label": ""}).json()["label"] is None
    )


def test_contrast_route(setup):
    # route: /api/features/{sae}/contrast
    client, model, lab = setup
    pos = [f"the model carries features {i}" for i in range(6)]
    neg = [f"a sparse autoencoder splits it apart {i}" for i in range(6)]
    out = client.post(
        "/api/features/tiny-l1/contrast", json={"positive": pos, "negative": neg, "top": 5}
    ).json()
    ref = contrast_features(model, lab.get("tiny-l1").sae, pos, neg, ContrastConfig(top=5, n_boot=500))
    assert [f["feature"] for f in out["features"]] == [f.feature for f in ref.features]
    assert [f["auroc"] for f in out["features"]] == [f.auroc for f in ref.features]


def test_edits_change_only_this_request(setup):
    # routes: /api/edits (GET, POST)
    client, model, lab = setup
    ablate = client.post(
        "/api/edits", json={"sae": "tiny-l1", "features": [3, 5], "method": "ablate", "rank": 4}
    ).json()
    assert ablate["kind"] == "lora" and ablate["first_layer"] == 0 and ablate["exact"]
    sae = lab.get("tiny-l1").sae
    _, cache = model.run_with_cache(PROMPT, names=[sae.cfg.hook_name])
    # the SAE reads the last layer: a clamp moves the next-token logits only where it fires on the last token
    firing = int(sae.encode(cache[sae.cfg.hook_name])[0, -1].argmax())
    clamp = client.post(
        "/api/edits", json={"sae": "tiny-l1", "features": [firing], "method": "clamp", "value": 4.0}
    ).json()
    assert clamp["kind"] == "hooked" and clamp["first_layer"] == 1
    names = {e["name"] for e in client.get("/api/edits").json()["edits"]}
    assert names == {ablate["name"], clamp["name"]}
    with torch.no_grad():
        plain = model(PROMPT)[0, -1]
        for edits in ([ablate["name"]], [clamp["name"]], [ablate["name"], clamp["name"]]):
            out = client.post(
                "/api/run", json={"prompt": PROMPT, "interventions": {"edits": edits}, "top_k": 5}
            ).json()
            ref = run_with_edits(model, PROMPT, edits)[0, -1]
            for t in out["top"]:
                assert t["logit"] == pytest.approx(float(ref[t["token_id"]]), abs=1e-4)
                assert t["base_logit"] == pytest.approx(float(plain[t["token_id"]]), abs=1e-4)
            assert out["kl"] > 0, edits
    again = client.post("/api/run", json={"prompt": PROMPT, "top_k": 5}).json()
    assert again["kl"] == pytest.approx(0.0, abs=1e-7)  # no edit named: the plain model
    missing = client.post("/api/run", json={"prompt": PROMPT, "interventions": {"edits": ["nope"]}})
    assert missing.status_code == 404 and "No prepared edit named 'nope'" in missing.json()["detail"]


def test_a_new_ablation_answers_with_its_hooked_form_until_its_adapter_is_attached(setup):
    """Toggling a feature whose edit is not prepared: the first answer comes from the exact hooked ablation
    (no adapter built yet); the adapter, attached when the model is idle, gives the same logits."""
    client, model, lab = setup
    live = LiveEdits.of(model)
    first = lab.prepare_edit("tiny-l1", [11, 2], "ablate", None, 4)
    assert first.build is not None and first.kind == "lora" and not first.attached
    assert live.adapters([first.name]) == [] and first.first_layer == 0 and first.info["exact"]
    t = model.to_tokens(PROMPT)
    with torch.no_grad():
        hooked = run_with_edits(model, t, [first.name])
        live.finish(first.name)
        assert (
            first.attached
            and live.adapters([first.name]) == [first.name]
            and first.name in EditHost.of(model).names()
        )
        prepared = run_with_edits(model, t, [first.name])
        plain = model(t)
    assert (hooked - prepared).abs().max() <= 1e-4 and (prepared - plain).abs().max() > 1e-3
    # through the server: the reply at once, the adapter once nothing has waited for half a second
    out = client.post("/api/edits", json={"sae": "tiny-l1", "features": [9], "rank": 4}).json()
    reply = client.post(
        "/api/run", json={"prompt": PROMPT, "interventions": {"edits": [out["name"]]}, "top_k": 5}
    )
    assert reply.status_code == 200
    for _ in range(100):
        if not live.pending():
            break
        time.sleep(0.1)
    assert live.pending() == [] and out["name"] in EditHost.of(model).names()
    with torch.no_grad():
        ref = run_with_edits(model, PROMPT, [out["name"]])[0, -1]
    for tok in reply.json()["top"]:
        assert tok["logit"] == pytest.approx(float(ref[tok["token_id"]]), abs=1e-4)


def test_export_and_download(setup, tmp_path):
    # routes: /api/export, /api/export/{name}.zip
    client, model, lab = setup
    client.put("/api/features/tiny-l1/label", json={"feature": 3, "label": "three"})
    e = client.post("/api/edits", json={"sae": "tiny-l1", "features": [3], "rank": 4}).json()
    out = client.post("/api/export", json={"name": "my-edit", "edits": [e["name"]]}).json()
    assert out["saes"] == ["tiny-l1"] and out["download"] == "/api/export/my-edit.zip"
    bundle = tmp_path / "ws" / "bundles" / "my-edit"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["labels"] == {"tiny-l1": {"3": "three"}} and len(manifest["edits"]) == 1
    z = zipfile.ZipFile(io.BytesIO(client.get("/api/export/my-edit.zip").content))
    assert (
        "my-edit/manifest.json" in z.namelist()
        and "my-edit/saes/tiny-l1/features/features.parquet" in z.namelist()
    )
    # names from the UI stay inside the workspace
    assert client.post("/api/export", json={"name": "../out", "edits": [e["name"]]}).status_code == 422
    assert client.get("/api/export/..%2Fetc.zip").status_code in (404, 422)
    assert client.get("/api/export/absent.zip").status_code == 404
    hooked = client.post(
        "/api/edits", json={"sae": "tiny-l1", "features": [7], "method": "clamp", "value": 2.0}
    ).json()
    refused = client.post("/api/export", json={"name": "b2", "edits": [hooked["name"]]})
    assert refused.status_code == 422 and "distil it into a LoRA" in refused.json()["detail"]


def test_ui_with_a_bundle_attaches_its_saes_edits_and_labels(sae_dir, tmp_path):
    """`neuroscope ui --bundle DIR`: the verified bundle's SAE, edit and labels are in the Features view; the
    edit can be named by a request at once."""
    from neuroscope.bundles import BundleContents, export_bundle
    from neuroscope.edits import ablation_edit
    from neuroscope.sae import load_sae

    torch.set_num_threads(1)
    maker = fresh("llama")
    sae = load_sae(sae_dir)
    contents = BundleContents(
        saes={"shared": sae},
        edits={"no-3": ablation_edit(maker, sae, [3], rank=4)},
        labels={"shared": {3: "three"}},
    )
    bundle = export_bundle(maker, contents, tmp_path / "bundle")
    model = fresh("llama")
    app = create_app(
        Settings(model="tiny:llama", bundle=str(bundle), workspace=str(tmp_path / "ws")), model=model
    )
    with TestClient(app, base_url=BASE) as client:
        assert [s["name"] for s in client.get("/api/features").json()["saes"]] == ["shared"]
        edits = client.get("/api/edits").json()["edits"]
        assert [(e["name"], e["kind"], e["features"]) for e in edits] == [("no-3", "lora", [3])]
        rows = client.get("/api/features/shared/table", params={"search": "three"}).json()["rows"]
        assert [r["id"] for r in rows] == [3]
        out = client.post("/api/run", json={"prompt": PROMPT, "interventions": {"edits": ["no-3"]}}).json()
        ref = run_with_edits(model, PROMPT, ["no-3"])[0, -1]
        assert out["top"][0]["logit"] == pytest.approx(float(ref[out["top"][0]["token_id"]]), abs=1e-4)
    # a bundle made for other weights is refused at start-up, naming the model it was made for
    other = fresh("llama")
    with torch.no_grad():
        other.hf_model.model.layers[0].mlp.down_proj.weight.mul_(1.01)
    from neuroscope.errors import ModelMismatchError

    with pytest.raises(ModelMismatchError, match="made for model 'tiny:llama'"):
        create_app(
            Settings(model="tiny:llama", bundle=str(bundle), workspace=str(tmp_path / "ws2")), model=other
        )
