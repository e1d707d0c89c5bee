"""Evaluation numbers on cases whose answers are known, and the width check."""

from __future__ import annotations

import pytest
import torch
from sae_testutil import HOOK, stores, trained
from tinymodels import tiny

from neuroscope.errors import InvalidConfigError
from neuroscope.record.reader import ActivationStore
from neuroscope.sae import SAE, SAEConfig
from neuroscope.sae.evaluate import evaluate_sae, heldout_contexts


def _identity_sae(d: int) -> SAE:
    """ReLU SAE with latents [x, -x]: relu(x) - relu(-x) reconstructs x exactly."""
    sae = SAE(SAEConfig(d_in=d, d_sae=2 * d, arch="relu", hook_name=HOOK))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_exact_reconstruction_gives_fvu_zero_and_full_ce_recovery():
    _, held = stores()
    model = tiny("llama")
    r = evaluate_sae(_identity_sae(model.cfg.d_model), held, model, ce_contexts=8)
    assert r.fvu == pytest.approx(0.0, abs=1e-6)
    assert r.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert r.ce_spliced == pytest.approx(r.ce_clean, abs=1e-4)
    assert r.ce_loss_recovered == pytest.approx(1.0, abs=1e-3)
    assert r.ce_zero_ablation != pytest.approx(r.ce_clean, abs=1e-3)
    # every coordinate is nonzero in exactly one of x, -x (floats are never exactly 0 here)
    assert r.l0 == pytest.approx(model.cfg.d_model, abs=0.01)
    assert r.dead_fraction == 0.0


def test_mean_only_sae_gives_fvu_one_and_excludes_special_tokens():
    _, held = stores()
    store = ActivationStore(held)
    d = store.d()
    b = store.read_all()
    keep = ~torch.isin(b.token_id, torch.tensor(store.special_token_ids))
    assert (~keep).sum() > 0  # the store has BOS tokens to exclude
    mean = b.acts[keep].double().mean(0).float()
    sae = SAE(SAEConfig(d_in=d, d_sae=4, arch="relu"))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(-1.0)  # nothing fires: x_hat = b_dec
        sae.b_dec.copy_(mean)
    r = evaluate_sae(sae, store, None)
    assert r.fvu == pytest.approx(1.0, abs=1e-4)
    assert r.n_tokens == int(keep.sum())
    assert r.l0 == 0.0 and r.dead_fraction == 1.0 and r.dense_fraction == 0.0
    # by hand: FVU of a constant guess c = ||x - c||^2 / ||x - mean||^2 on non-special rows
    x = b.acts[keep].double()
    c = torch.zeros(d, dtype=torch.float64)
    with torch.no_grad():
        sae.b_dec.zero_()
    expected = float((x - c).pow(2).sum(-1).mean() / (x - x.mean(0)).pow(2).sum(-1).mean())
    assert evaluate_sae(sae, store).fvu == pytest.approx(expected, rel=1e-5)


def test_trained_topk_numbers_are_consistent():
    _, held = stores()
    sae = trained("topk")[0]
    r = evaluate_sae(sae, held, tiny("llama"), ce_contexts=8)
    assert r.l0 == 8.0 and r.k == 8
    assert 0 < r.fvu < 0.6 and r.explained_variance == pytest.approx(1 - r.fvu)
    assert r.ce_tokens > 0 and r.ce_loss_recovered is not None


def test_heldout_contexts_rebuild_the_recorded_tokens():
    _, held = stores()
    store = ActivationStore(held)
    ctx = heldout_contexts(store, 4)
    assert ctx.shape == (4, 64)
    assert (ctx[:, 0] == store.manifest["bos_token_id"]).all()


def test_width_mismatch_names_both_widths():
    _, held = stores()
    sae = SAE(SAEConfig(d_in=40, d_sae=80, k=4))
    with pytest.raises(
        InvalidConfigError, match=r"d_in=40 but hook blocks\.1\.hook_resid_post .* has width 64"
    ):
        evaluate_sae(sae, held)


def test_outliers_are_reported_apart_and_the_strict_numbers_kept():
    _, held = stores()
    sae = trained("topk")[0]
    strict = evaluate_sae(sae, held, outlier_factor=None)
    split = evaluate_sae(sae, held, outlier_factor=1.1)  # a low bar, so some tokens count as outliers
    d = split.to_dict()
    assert d["outlier_tokens"] > 0
    assert split.n_tokens + d["outlier_tokens"] == strict.n_tokens == d["n_tokens_including_outliers"]
    assert d["fvu_including_outliers"] == pytest.approx(strict.fvu, rel=1e-9)
    assert split.fvu != pytest.approx(strict.fvu, rel=1e-6)
