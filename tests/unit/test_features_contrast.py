"""Feature contrast: AUROC against a brute-force count, held-out split, bootstrap interval, CLI."""

from __future__ import annotations

import json

import torch
from edits_testutil import fresh, random_sae

from neuroscope.cli import main
from neuroscope.sae import save_sae
from neuroscope.sae.contrast import ContrastConfig, auroc, contrast_features, max_activations

POS = [f"the number {n} is written with digits {n * 7}" for n in range(12)]
NEG = [
    f"a sentence about {w} and nothing numeric"
    for w in (
        "cats",
        "rivers",
        "music",
        "trees",
        "bread",
        "snow",
        "glass",
        "wind",
        "salt",
        "rope",
        "wool",
        "clay",
    )
]


def test_auroc_matches_pair_counting():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 4, (7, 5), generator=gen).float()
    neg = torch.randint(0, 4, (6, 5), generator=gen).float()
    got = auroc(pos, neg, chunk=2)
    for j in range(5):
        wins = sum(float(p > n) + 0.5 * float(p == n) for p in pos[:, j] for n in neg[:, j])
        assert abs(float(got[j]) - wins / 42) < 1e-6


def _planted_sae(model):
    """An SAE whose feature 0 reads the direction that separates digit tokens from the rest, feature 1 a
    random direction (it fires on both sets), and every other feature is silent."""
    sae = random_sae(model)
    with torch.no_grad():
        sae.b_enc[2:] = -1e4
    hook = sae.cfg.hook_name
    t = model.tokenize(POS + NEG)
    with torch.no_grad():
        _, cache = model.run_with_cache(t.ids, names=[hook], attention_mask=t.attention_mask)
    x = cache[hook]
    digit = torch.tensor([[model.tokenizer.decode([int(i)]).isdigit() for i in row] for row in t.ids])
    real = t.attention_mask.bool() if t.attention_mask is not None else torch.ones_like(digit)
    d = x[digit].mean(0) - x[real & ~digit].mean(0)
    d = d / d.norm()
    proj = (x - sae.b_dec) @ d
    cut = 0.5 * (proj[digit].mean() + proj[real & ~digit].max())
    with torch.no_grad():
        sae.W_enc[:, 0] = 50 * d
        sae.b_enc[0] = -50 * cut
    return sae


def test_contrast_finds_a_planted_feature_on_held_out_prompts(tmp_path):
    model = fresh("llama")
    sae = _planted_sae(model)
    r = contrast_features(model, sae, POS, NEG, ContrastConfig(top=20, n_boot=200, heldout_fraction=0.34))
    assert r.n_train == {"positive": 8, "negative": 8} and r.n_heldout == {"positive": 4, "negative": 4}
    acts = max_activations(model, sae, POS + NEG)
    assert acts.shape == (24, sae.d_sae) and bool((acts >= 0).all())
    planted = r.features[0]
    assert planted.feature == 0 and planted.auroc_train >= 0.9 and planted.auroc >= 0.75
    assert planted.mean_negative == 0.0 and planted.mean_diff > 10
    silent = [f for f in r.features if f.feature >= 2]
    assert silent and all(f.auroc == 0.5 and f.ci_low == f.ci_high == 0.5 for f in silent)
    assert all(f.ci_low <= f.auroc <= f.ci_high for f in r.features)
    scores = [abs(f.auroc_train - 0.5) for f in r.features]
    assert scores == sorted(scores, reverse=True)
    pos_file, neg_file = tmp_path / "pos.txt", tmp_path / "neg.txt"
    pos_file.write_text("\n".join(POS))
    neg_file.write_text("\n".join(NEG))
    save_sae(sae, tmp_path / "sae")  # the same planted SAE through the CLI
    out = tmp_path / "c.json"
    assert (
        main(
            [
                "features",
                "contrast",
                "--model",
                "tiny:llama",
                "--sae",
                str(tmp_path / "sae"),
                "--positive",
                str(pos_file),
                "--negative",
                str(neg_file),
                "--top",
                "20",
                "--boot",
                "200",
                "--heldout",
                "0.34",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    cli = json.loads(out.read_text())
    assert [f["feature"] for f in cli["features"]] == [f.feature for f in r.features]
