"""ONNX split export on tiny random models: every tested architecture exports and matches PyTorch; bad input."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from tinymodels import tiny

from neuroscope.cli import main
from neuroscope.errors import (
    CorruptDataError,
    ExportArchitectureError,
    ExportedLengthError,
    IndexOutOfRangeError,
    InvalidConfigError,
    ShapeMismatchError,
)
from neuroscope.export import manifest as mf
from neuroscope.export.onnx_kv import KV_ARCHITECTURES
from neuroscope.export.onnx_split import TESTED_ARCHITECTURES, ExportConfig, export_split
from neuroscope.export.runtime import SplitRunner
from neuroscope.export.validate import validate_export
from neuroscope.export.vectors import StoredVector, read_vector_store, save_vector, select_vectors
from neuroscope.interventions import Steer
from neuroscope.models.tiny import TINY_TYPES


@pytest.fixture(scope="module")
def llama_export(tmp_path_factory):
    """tiny:llama split after block 0 through the CLI, with a stored vector and external data forced on."""
    root = tmp_path_factory.mktemp("onnx")
    model = tiny("llama")
    gen = torch.Generator().manual_seed(1)
    save_vector(root / "store", "push", 1, torch.randn(model.cfg.d_model, generator=gen) * 4)
    out = root / "export"
    code = main(
        ["export-onnx", "--model", "tiny:llama", "--split", "0", "--out", str(out), "--vectors", "push"]
        + ["--vectors-dir", str(root / "store"), "--validate", "--no-web", "--external-data"]
    )
    assert code == 0
    return out


def test_tiny_llama_exports_and_validates(llama_export):
    man = mf.read_manifest(llama_export)
    v = man["validation"]
    assert v["passed"] and v["n_prompts"] >= 20
    assert min(v["token_lengths"]) == 1 and max(v["token_lengths"]) == 256  # the tiny context
    assert v["max_logit_diff"] <= 1e-3 and v["boundary_excess"] <= 1e-4 and v["greedy_agreement"] == 1.0
    assert v["steer_max_diff"] <= 1e-3 and v["steer_vector"] == "push" and v["steer_effect"] > 0.1
    assert v["zero_vector_max_diff"] <= 1e-3 and v["batch_max_diff"] <= 1e-3
    assert man["boundary_hook"] == "blocks.1.hook_resid_pre" and man["split"] == 0
    assert man["tied_embeddings"] is False  # tiny configs untie; the note says where each matrix went
    assert (
        man["vectors"][0]["name"] == "push" and man["vectors"][0]["applied_at"] == "blocks.1.hook_resid_pre"
    )
    # every file hashed, tokenizer files beside the parts
    for rel, entry in man["files"].items():
        assert (llama_export / rel).stat().st_size == entry["bytes"]
    assert "tokenizer/tokenizer.json" in man["files"] and "vectors.json" in man["files"]


def test_runner_matches_steer_and_tokenizer(llama_export):
    model = tiny("llama")
    runner = SplitRunner(llama_export)
    prompt = "Steering between the halves"
    ids = runner.encode(prompt)
    assert ids[0].tolist() == model.to_tokens(prompt)[0].tolist()  # exported tokenizer == the model's
    v = read_vector_store(llama_export.parent / "store")["push"].vector
    got, resid = runner.logits(ids, vector=v.numpy(), alpha=-3.0)
    with torch.no_grad():
        ref = model(torch.tensor(ids), interventions=[Steer(1, v, alpha=-3.0)]).numpy()
        _, cache = model.run_with_cache(torch.tensor(ids), names=["blocks.1.hook_resid_pre"])
    assert np.abs(got - ref).max() < 1e-4
    assert np.abs(resid - (cache["blocks.1.hook_resid_pre"].numpy() - 3.0 * v.numpy())).max() < 1e-4
    steered = runner.generate(prompt, 6, vector=v.numpy(), alpha=-3.0)
    assert steered == model.generate(prompt, 6, interventions=[Steer(1, v, alpha=-3.0)])


def _kv_checks(model, runner, v, alpha, split):
    """Cached greedy generation == uncached == the library's hooked generation (steered), and the cached
    boundary residual of every position == the hooked model's plus alpha * v."""
    hook = f"blocks.{split + 1}.hook_resid_pre"
    for prompt in ("Steering between the halves", "A"):
        ids = runner.encode(prompt)[0].tolist()
        cached = runner.generate_ids(ids, 6, vector=v.numpy(), alpha=alpha)
        assert cached == runner.generate_ids(ids, 6, vector=v.numpy(), alpha=alpha, cache=False)
        text = runner.tokenizer.decode(cached, skip_special_tokens=True)
        assert text == model.generate(prompt, 6, interventions=[Steer(split + 1, v, alpha=alpha)])
        # prompt in one call, then one token per call: residuals and logits of every position
        full = ids + cached
        state = runner.start_cache()
        logits, resid, state = runner.step(np.asarray([ids]), state, v.numpy(), alpha)
        rows, resids = [logits], [resid]
        for t in cached:
            logits, resid, state = runner.step(np.asarray([[t]]), state, v.numpy(), alpha)
            rows.append(logits)
            resids.append(resid)
        assert state.length == len(full) and state.past["a", f"past_key_{split}"].shape[2] == len(full) + 1
        with torch.no_grad():
            ref = model(torch.tensor([full]), interventions=[Steer(split + 1, v, alpha=alpha)]).numpy()
            _, cache = model.run_with_cache(torch.tensor([full]), names=[hook])
        boundary = cache[hook].numpy() + alpha * v.numpy()
        assert np.abs(np.concatenate(resids, 1) - boundary).max() < 1e-4
        assert np.abs(np.concatenate(rows, 1)[:, : len(full)] - ref).max() < 1e-3


def test_kv_cache_generation_is_exact_and_steerable(llama_export):
    model = tiny("llama")
    runner = SplitRunner(llama_export)
    man = runner.manifest
    assert man["kv_parts"]["a"]["inputs"][:4] == ["input_ids", "attention_mask", "past_key_0", "past_value_0"]
    assert man["kv_parts"]["b"]["outputs"][:2] == ["logits", "present_key_1"]
    assert "part_a_kv.onnx" in man["files"] and runner.has_kv
    v = read_vector_store(llama_export.parent / "store")["push"].vector
    _kv_checks(model, runner, v, -3.0, 0)


def test_external_data_travels_with_its_part(llama_export):
    man = mf.read_manifest(llama_export)
    for key in ("a", "b"):
        extra = man["parts"][key]["external_data"]
        assert extra and all(rel in man["files"] for rel in extra)
        assert extra == [f"part_{key}.onnx.data"]
        # the weights are in the data file (the larger tensors; onnx keeps small ones inline)
        assert (llama_export / extra[0]).stat().st_size > 100_000


@pytest.mark.parametrize("model_type", [t for t in TESTED_ARCHITECTURES if t != "llama"])
def test_every_tested_architecture_matches_pytorch(model_type, tmp_path):
    model = tiny(model_type)
    split = model.cfg.n_layers - 2
    export_split(model, ExportConfig(split=split, copy_web_page=False), tmp_path / "x")
    report = validate_export(model, tmp_path / "x", write=False)
    assert report.passed, report.summary()
    assert report.max_logit_diff <= 1e-3 and report.greedy_agreement == 1.0
    assert report.steer_max_diff <= 1e-3 and report.steer_effect > 0.01
    runner = SplitRunner(tmp_path / "x")
    assert runner.has_kv == (model_type in KV_ARCHITECTURES)
    if runner.has_kv:
        v = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 4
        _kv_checks(model, runner, v, 2.0, split)


def test_tested_architectures_are_the_tiny_types():
    assert set(TESTED_ARCHITECTURES) == set(TINY_TYPES)


# --- bad input -------------------------------------------------------------------------------------
def test_split_outside_range_is_refused(tmp_path):
    model = tiny("llama")  # 2 layers: the only split is 0
    for k in (-1, 1, 5):
        with pytest.raises(IndexOutOfRangeError, match=r"valid split layers are 0\.\.0"):
            export_split(model, ExportConfig(split=k), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert main(["export-onnx", "--model", "tiny:llama", "--split", "3", "--out", str(tmp_path / "y")]) == 2


def test_a_model_with_live_edits_is_refused(tmp_path):
    """The lab's per-row LoRA layers read the batch size, which torch.export would freeze at the example's 2."""
    from edits_testutil import fresh, random_sae

    from neuroscope.edits import EditHost, ablation_edit
    from neuroscope.errors import LiveEditsAttachedError

    model = fresh("llama")
    EditHost.of(model).add("a", ablation_edit(model, random_sae(model), [3, 7], rank=4))
    with pytest.raises(LiveEditsAttachedError, match="live LoRA edits.*--merge"):
        export_split(model, ExportConfig(split=0), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_unknown_architecture_names_the_tested_ones(tmp_path):
    model = copy.copy(tiny("llama"))
    model.cfg = dataclasses.replace(model.cfg, model_type="mamba")
    with pytest.raises(ExportArchitectureError) as e:
        export_split(model, ExportConfig(split=0), tmp_path / "x")
    assert "'mamba'" in str(e.value) and all(t in str(e.value) for t in TESTED_ARCHITECTURES)


def test_vector_of_wrong_width_is_refused(tmp_path, llama_export):
    model = tiny("llama")
    bad = StoredVector("wide", 1, torch.ones(model.cfg.d_model + 1), "test")
    with pytest.raises(ShapeMismatchError, match="wide"):
        export_split(model, ExportConfig(split=0), tmp_path / "x", [bad])
    assert not (tmp_path / "x").exists()
    with pytest.raises(ShapeMismatchError):
        SplitRunner(llama_export).logits(np.array([[1, 2, 3]]), vector=np.ones(7, np.float32))
    save_vector(tmp_path / "store", "ok", 0, torch.ones(3))
    with pytest.raises(Exception, match="No steering vector named 'nope'"):
        select_vectors(tmp_path / "store", ["nope"])


def test_prompt_over_the_exported_length_is_refused(llama_export):
    runner = SplitRunner(llama_export)
    with pytest.raises(ExportedLengthError, match="at most 256"):
        runner.logits(np.zeros((1, 257), dtype=np.int64))


def test_corrupted_or_mismatched_part_is_refused(llama_export, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(llama_export, bad)
    part = bad / "part_b.onnx"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="part_b.onnx"):
        SplitRunner(bad)
    # a part from another export: same name, different content
    other = tmp_path / "other"
    shutil.copytree(llama_export, other)
    ext = json.loads((other / "manifest.json").read_text())["parts"]["a"]["external_data"][0]
    (other / ext).write_bytes((other / ext).read_bytes()[::-1])
    with pytest.raises(CorruptDataError, match=ext.replace(".", r"\.")):
        SplitRunner(other)


def test_out_folder_that_is_not_an_export_is_left_alone(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidConfigError, match="not an ONNX export"):
        export_split(tiny("llama"), ExportConfig(split=0), tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_failed_export_leaves_the_previous_one(tmp_path, monkeypatch, llama_export):
    out = tmp_path / "x"
    shutil.copytree(llama_export, out)
    before = (out / "manifest.json").read_text()
    from neuroscope.export import onnx_split

    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated exporter failure on part B")
        return real(*args, **kwargs)

    real = onnx_split._export_one
    monkeypatch.setattr(onnx_split, "_export_one", fail_second)
    with pytest.raises(RuntimeError, match="simulated"):
        export_split(tiny("llama"), ExportConfig(split=0, copy_web_page=False), out)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no temporary folder left behind


# --- NeuroScope-Web routes ---------------------------------------------------------------------------
def test_web_routes_serve_the_page_and_the_export(llama_export, tmp_path):
    """GET /web, /web/ and /web/{rel:path}: the built page, onnxruntime's wasm, and only the export's listed files."""
    from fastapi.testclient import TestClient

    from neuroscope.export.web import WEB_DIR
    from neuroscope.server.app import create_app
    from neuroscope.server.settings import Settings

    assert (WEB_DIR / "web.html").exists(), "NeuroScope-Web is not built: run `make ui`"
    model = tiny("llama")
    (llama_export.parent / "secret.txt").write_text("not for the web")
    (llama_export / "stray.bin").write_bytes(b"not in the manifest")
    app = create_app(Settings(model="tiny:llama", onnx_dir=str(llama_export)), model=model)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.get("/web", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/web/"
        assert c.get("/api/model").json()["web"] is True  # the workbench's nav links to /web/
        page = c.get("/web/")
        assert page.status_code == 200 and "NeuroScope-Web" in page.text
        for h, v in (
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-embedder-policy", "require-corp"),
        ):
            assert page.headers[h] == v
        assert "default-src 'self'" in page.headers["content-security-policy"]
        wasm = c.get("/web/ort/ort-wasm-simd-threaded.wasm")
        assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
        assert wasm.content[:4] == b"\0asm"
        man = c.get("/web/manifest.json").json()
        part = c.get("/web/part_a.onnx")
        assert part.content == (llama_export / "part_a.onnx").read_bytes()
        assert man["files"]["part_a.onnx"]["bytes"] == len(part.content)
        assert c.get("/web/tokenizer/tokenizer.json").status_code == 200
        assert c.get("/web/stray.bin").status_code == 404  # in the folder but not in the manifest
        assert c.get("/web/../secret.txt").status_code == 404
        assert c.get("/web/%2e%2e/secret.txt").status_code == 404
    (llama_export / "stray.bin").unlink()
    # no export configured: the page is served, the model files are a 404 that says what to do
    app = create_app(Settings(model="tiny:llama"), model=model)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/web/").status_code == 200
        r = c.get("/web/manifest.json")
        assert r.status_code == 404 and "--onnx" in r.json()["detail"]


def test_kv_cache_bad_input(tmp_path):
    """Without the cached parts (--no-kv-cache): a clear error from the cache, generation falls back to the
    whole sequence per step; with them, a cache that would exceed the exported length is refused."""
    from neuroscope.errors import ResourceNotFoundError

    model = tiny("llama")
    out = tmp_path / "plain"
    args = ["export-onnx", "--model", "tiny:llama", "--split", "0", "--out", str(out), "--no-web"]
    assert main([*args, "--no-kv-cache", "--max-length", "16"]) == 0
    runner = SplitRunner(out)
    assert not runner.has_kv and runner.manifest["kv_parts"] is None
    with pytest.raises(ResourceNotFoundError, match="no KV-cached parts.*re-export"):
        runner.start_cache()
    ids = runner.encode("Hi")[0].tolist()  # byte-level: BOS + 2
    assert runner.generate_ids(ids, 3) == runner.generate_ids(ids, 3, cache=False)
    assert runner.tokenizer.decode(runner.generate_ids(ids, 3), skip_special_tokens=True) == model.generate(
        "Hi", 3
    )
    export_split(model, ExportConfig(split=0, max_length=16, copy_web_page=False), tmp_path / "kv")
    runner = SplitRunner(tmp_path / "kv")
    _, _, state = runner.step(np.zeros((1, 12), dtype=np.int64), runner.start_cache())
    with pytest.raises(ExportedLengthError):
        runner.step(np.zeros((1, 5), dtype=np.int64), state)
    _, _, state = runner.step(np.zeros((1, 4), dtype=np.int64), state)
    assert state.length == 16
