"""Acceptance checks of the analysis library on smollm2-135m (issue 3). Every number asserted is measured here;
each threshold sits near the value measured on the development machine (in the comment beside it) with the
margin stated there: the computations are deterministic, so a move past the margin is a change in the code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroscope.analysis import attention, figures, patching
from neuroscope.analysis._util import load_data, pearson
from neuroscope.analysis.attribution import integrated_gradients
from neuroscope.analysis.lens import logit_lens
from neuroscope.analysis.probes import probe_hook, probe_labelled
from neuroscope.analysis.residual import direct_logit_attribution
from neuroscope.analysis.steering import steering_sweep, steering_vector
from neuroscope.interventions import Patch

pytestmark = pytest.mark.integration

IOI = load_data("ioi")["prompts"][0]
BANK = Path(__file__).resolve().parents[2] / "docs" / "analysis" / "bank_sense.jsonl"
TOP3_DELTA_MIN = 3.0  # measured 3.39 (deterministic seeds; margin 0.39)


@pytest.fixture(scope="module")
def ioi(smollm):
    return patching.prepare(smollm, IOI["clean"], IOI["corrupted"], IOI["answer"], IOI["wrong"])


def test_logit_lens_last_layer_is_the_model(smollm, tmp_path):
    r = logit_lens(smollm, IOI["clean"], k=5)
    with torch.no_grad():
        probs = torch.softmax(smollm(IOI["clean"])[0].float(), -1)
    assert (r.probs[-1] - probs).abs().max().item() <= 1e-5
    assert max(r.kl_to_final[-1]) <= 1e-6
    assert r.top_tokens[-1][-1][0] == " Mary"
    assert r.kl_to_final[0][-1] > r.kl_to_final[-2][-1]  # converges toward the output
    figures.write(r.figure(), tmp_path / "lens.html")


def test_head_classification_and_induction_ablation(smollm, tmp_path):
    c = attention.classify_heads(smollm, n_seqs=8, half_len=20, seed=0)
    ind = np.asarray(c.scores["induction"])
    prev = np.asarray(c.scores["previous_token"])
    # measured: induction L18H6 0.79, previous-token L16H0 0.87 (margin 0.04)
    assert np.unravel_index(ind.argmax(), ind.shape) == (18, 6) and ind.max() >= 0.75
    assert np.unravel_index(prev.argmax(), prev.shape) == (16, 0) and prev.max() >= 0.83
    assert c.labels["induction"][0][:2] == (18, 6) and c.labels["previous_token"][0][:2] == (16, 0)
    a = attention.induction_ablation(smollm, c, k=3, n_draws=20, n_seqs=2, half_len=20, seed=1)
    print(
        f"induction heads {c.labels['induction'][:3]}; previous-token {c.labels['previous_token'][:3]}; "
        f"ablation Δloss top-3 {a.top_delta:.3f} vs random {a.random_mean:.3f} {a.random_ci}"
    )
    assert len(a.random_deltas) == 20
    assert a.top_delta >= TOP3_DELTA_MIN and a.top_delta >= 5 * a.random_mean
    figures.write(c.figure(), tmp_path / "induction.html")


def test_dla_sums_to_the_logit_difference(smollm):
    r = direct_logit_attribution(smollm, IOI["clean"], IOI["answer"], IOI["wrong"])
    assert r.rel_error <= 1e-5  # measured 1.6e-7 (float32 sums over 300 terms)
    with torch.no_grad():
        last = smollm(IOI["clean"])[0, -1]
    ids = [smollm.tokenizer.encode(t, add_special_tokens=False)[0] for t in (IOI["answer"], IOI["wrong"])]
    assert abs(float(last[ids[0]] - last[ids[1]]) - r.total) <= 1e-5 * abs(r.total)


def test_integrated_gradients_completeness(smollm):
    # a counterfactual baseline: the same sentence with other names (the mean-embedding path has sharp jumps here)
    reference = "When Alice and Bob went to the store, Bob gave a drink to"
    r = integrated_gradients(smollm, IOI["clean"], IOI["answer"], IOI["wrong"], steps=64, baseline=reference)
    print(
        f"IG: f(x)={r.f_input:.4f} f(b)={r.f_baseline:.4f} sum={sum(r.attributions):.4f} err={r.completeness_error:.2e}"
    )
    assert r.completeness_error <= 1e-4  # measured 1.8e-6
    names = {1, 3, 9}  # only the differing tokens carry attribution
    assert all(abs(a) < 1e-6 for i, a in enumerate(r.attributions) if i not in names)


def test_patching_batched_equals_loop_and_the_patched_model(smollm, ioi, tmp_path):
    layers = [0, 12, 27]
    sweep = patching.patch_sweep(smollm, ioi, "resid_pre", layers=layers)
    arr = sweep.array()
    _, clean = smollm.run_with_cache(IOI["clean"], names=[f"blocks.{l}.hook_resid_pre" for l in layers])
    for layer, pos in [(0, 1), (0, 9), (12, 4), (27, 13), (27, 1)]:
        with torch.no_grad():
            logits = smollm(
                IOI["corrupted"],
                interventions=[Patch(f"blocks.{layer}.hook_resid_pre", clean, positions=[pos])],
            )
        assert abs(ioi.normalise(float(ioi.ld(logits))) - arr[layer, pos]) <= 1e-4
    # information sits at the name positions early and at the last position late
    names = [i for i, t in enumerate(ioi.str_tokens) if t in (" Mary", " John")]
    print(
        "resid_pre patching: layer 0", np.round(arr[0], 3).tolist(), "layer 27", np.round(arr[27], 3).tolist()
    )
    assert int(np.argmax(arr[0])) in names and arr[0, -1] < 0.1
    assert int(np.argmax(arr[27])) == len(ioi.str_tokens) - 1 and arr[27, -1] > 0.7
    figures.write(sweep.figure(), tmp_path / "patch.html")


def test_attribution_patching_correlates_with_exact_head_patching(smollm, ioi):
    approx = patching.attribution_patching(smollm, ioi, "z")
    exact = patching.patch_sweep(smollm, ioi, "z")
    r = pearson(approx.array(), exact.array())
    print(
        f"attribution vs exact head patching: Pearson {r:.3f}; {approx.seconds:.1f} s vs {exact.seconds:.1f} s"
    )
    assert r >= 0.93  # measured 0.944


def test_digit_probe_beats_shuffled_control(smollm):
    r = probe_hook(smollm, load_data("digits")["texts"], "blocks.15.hook_resid_pre")
    print(f"probe {r.test_accuracy:.3f} vs control {r.control_test_accuracy:.3f}")
    # measured: probe 1.000, shuffled-label control 0.462
    assert r.test_accuracy >= 0.97 and r.control_test_accuracy <= 0.65


def test_sentiment_steering_moves_the_margin_both_ways(smollm, tmp_path):
    d = load_data("sentiment")
    assert len(d["positive"]) >= 20 and len(d["negative"]) >= 20 and len(d["neutral"]) >= 20
    v = steering_vector(smollm, d["positive"], d["negative"], layer=14)
    r = steering_sweep(
        smollm, v, 14, d["neutral"], d["positive_words"], d["negative_words"], alphas=[-2, 2], n_generate=0
    )
    lo_neg, hi_neg = r.delta_ci[0]
    lo_pos, hi_pos = r.delta_ci[2]
    print(
        f"steering Δmargin at -2: {r.delta[0]:.3f} [{lo_neg:.3f}, {hi_neg:.3f}]; at +2: {r.delta[2]:.3f} [{lo_pos:.3f}, {hi_pos:.3f}]"
    )
    # measured: +3.59 [3.38, 3.82] at +2, -2.74 [-3.26, -2.29] at -2
    assert r.delta[2] >= 3.2 and lo_pos > 2.8
    assert r.delta[0] <= -2.3 and hi_neg < -1.8
    figures.write(r.figure(), tmp_path / "steer.html")


def test_contrastive_experiment_from_the_cli(tmp_path):
    from neuroscope.cli import main

    out = tmp_path / "exp"
    argv = [
        "experiment",
        "--data",
        "contrastive_copying",
        "--k",
        "3",
        "--n-random",
        "10",
        "--heldout-frac",
        "0.3",
        "--out",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 0
    blob = json.loads((out / "result.json").read_text())
    for key in (
        "ranking",
        "top_heads",
        "effect",
        "effect_ci",
        "random_mean",
        "p_value",
        "discovery_indices",
        "heldout_indices",
    ):
        assert key in blob
    print(
        "contrastive:", {k: blob[k] for k in ("top_heads", "effect", "effect_ci", "random_mean", "p_value")}
    )
    assert "permutation p-value" in (out / "report.md").read_text()
    assert blob["effect"] < blob["random_mean"]  # the top heads matter more for copying than random heads


def test_path_patching_heads_to_the_logits(smollm, ioi):
    senders = [[(l, h)] for l in range(smollm.cfg.n_layers) for h in range(smollm.cfg.n_heads)]
    r = patching.path_patching(smollm, ioi, senders)
    m = r.head_map(smollm.cfg.n_layers, smollm.cfg.n_heads)
    order = np.dstack(np.unravel_index(np.argsort(-np.abs(m).ravel()), m.shape))[0][:6]
    print(
        "path patching to the logits, top heads:",
        [(int(l), int(h), round(float(m[l, h]), 4)) for l, h in order],
    )
    # the top head's value by an independent route: interventions freezing every other head to corrupted
    l, h = (int(x) for x in order[0])
    names = [f"blocks.{i}.attn.hook_z" for i in range(smollm.cfg.n_layers)]
    _, clean = smollm.run_with_cache(IOI["clean"], names=names)
    _, corr = smollm.run_with_cache(IOI["corrupted"], names=names)
    ivs = [
        Patch(names[i], clean if (i, j) == (l, h) else corr, heads=[j])
        for i in range(smollm.cfg.n_layers)
        for j in range(smollm.cfg.n_heads)
    ]
    with torch.no_grad():
        by_hand = float(ioi.normalise(ioi.ld(smollm(IOI["corrupted"], interventions=ivs))))
    assert m[l, h] == pytest.approx(by_hand, abs=1e-4)


def test_labelled_probe_reads_word_sense_in_context(smollm):
    # 60 sentences ending in " bank", river or money sense: the embedding is the same token in all of them
    emb = probe_labelled(smollm, BANK, "hook_embed")
    mid = probe_labelled(smollm, BANK, "blocks.15.hook_resid_pre")
    print(
        f"bank sense: embedding {emb.test_accuracy:.3f} (majority {emb.majority_baseline:.3f}), "
        f"layer 15 {mid.test_accuracy:.3f} (control {mid.control_test_accuracy:.3f})"
    )
    assert emb.classes == mid.classes == ["money", "river"] and emb.n_train + emb.n_test == 60
    assert emb.test_accuracy <= emb.majority_baseline + 1e-9
    assert mid.test_accuracy >= 0.9
