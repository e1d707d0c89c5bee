"""The contrastive experiment end to end on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from neuroscope.analysis import figures
from neuroscope.analysis.experiments import (
    ContrastiveConfig,
    answer_logprob,
    contrastive_experiment,
    write_report,
)
from neuroscope.errors import InvalidConfigError
from neuroscope.interventions import Ablate

TARGET = [{"prompt": f"{w} xy {w} x", "answer": "y"} for w in ("abc", "pqr", "mno", "hij", "uvw", "def")]
BASELINE = [{"prompt": f"{w} qq {w} x", "answer": "y"} for w in ("abc", "pqr", "mno", "hij", "uvw", "def")]


def test_experiment_runs_and_reports(tiny_llama, tmp_path):
    cfg = ContrastiveConfig(k=2, n_random=8, seed=3)
    r = contrastive_experiment(tiny_llama, TARGET, BASELINE, cfg)
    assert set(r.discovery_indices).isdisjoint(r.heldout_indices)
    assert sorted(r.discovery_indices + r.heldout_indices) == list(range(6))
    assert len(r.top_heads) == 2 and len(r.random_effects) == 8 and 0 < r.p_value <= 1
    assert abs(r.ranking[0][2]) >= abs(r.ranking[-1][2])
    again = contrastive_experiment(tiny_llama, TARGET, BASELINE, cfg)
    assert again.heldout_indices == r.heldout_indices and again.effect == r.effect  # seeded
    paths = write_report(r, tmp_path / "exp", model_name="tiny:llama")
    blob = json.loads(paths["json"].read_text())
    assert blob["top_heads"] == [list(h) for h in r.top_heads] and "p_value" in blob
    assert "permutation p-value" in paths["markdown"].read_text()
    figures.write(r.figure(), tmp_path / "delta.html")


def test_batched_ablation_equals_ablate_intervention(tiny_llama):
    m = tiny_llama
    prompts = [t["prompt"] for t in TARGET[:3]]
    ans = [m.tokenizer.encode("y", add_special_tokens=False)[0]] * 3
    keep = torch.ones(2, 2, 4)
    keep[1, 1, 2] = keep[1, 0, 0] = 0
    lp = answer_logprob(m, prompts, ans, keep)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            logits = m(p, interventions=[Ablate(heads=[(1, 2), (0, 0)])])
        assert abs(float(torch.log_softmax(logits[0, -1], -1)[ans[i]]) - float(lp[1, i])) < 1e-4


def test_config_is_validated():
    with pytest.raises(InvalidConfigError):
        ContrastiveConfig(statistic="nope")
    with pytest.raises(InvalidConfigError):
        ContrastiveConfig(heldout_frac=1.0)
