"""Feature statistics: stored table and contexts, and the top context re-checked through the model."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sae_testutil import HOOK, stores, trained
from tinymodels import tiny

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError
from neuroscope.record.reader import ActivationStore
from neuroscope.sae.evaluate import heldout_contexts, reconstruction_stats
from neuroscope.sae.features import FeatureConfig, FeatureStore, compute_features


@functools.cache
def features() -> FeatureStore:
    _, held = stores()
    out = Path(tempfile.mkdtemp(prefix="sae-features-")) / "features"
    compute_features(
        trained("topk")[0], held, tiny("llama"), out, FeatureConfig(top_contexts=10, n_examples=32)
    )
    return FeatureStore(out)


def test_table_has_the_stored_statistics():
    fs = features()
    sae = trained("topk")[0]
    assert len(fs) == sae.d_sae
    rows = fs.table(limit=sae.d_sae)
    assert [r["id"] for r in rows] == list(range(sae.d_sae))
    assert set(rows[0]) == {"id", "density", "mean_activation", "max_activation", "top_tokens"}
    # density agrees with the evaluator's per-latent firing rate
    _, held = stores()
    dens = reconstruction_stats(sae, ActivationStore(held))["density"].numpy()
    np.testing.assert_allclose([r["density"] for r in rows], dens, rtol=1e-9)
    assert sum(r["density"] for r in rows) == pytest.approx(8.0, rel=1e-6)  # L0 = k


def test_sort_page_and_search():
    fs = features()
    page = fs.table(sort="density", descending=True, limit=10)
    d = [r["density"] for r in page]
    assert d == sorted(d, reverse=True) and d[0] == max(fs.cols["density"])
    assert fs.table(offset=5, limit=3) == fs.table(limit=8)[5:]
    tok = next(r for r in fs.table(limit=len(fs)) if r["top_tokens"])["top_tokens"][0]
    hits = fs.table(search=tok, limit=len(fs))
    assert hits and all(any(tok.lower() in t.lower() for t in r["top_tokens"]) for r in hits)
    with pytest.raises(InvalidConfigError, match="sort must be one of"):
        fs.table(sort="bogus")
    with pytest.raises(IndexOutOfRangeError):
        fs.contexts(len(fs))


def test_feature_detail_has_logit_effects():
    fs = features()
    sae, model = trained("topk")[0], tiny("llama")
    f = fs.feature(3)
    logits = sae.W_dec[3].detach() @ model.W_U.detach().float()
    assert f["logit_top_ids"][0] == int(logits.argmax())
    assert f["logit_bottom_ids"][0] == int(logits.argmin())
    assert f["logit_top_values"][0] == pytest.approx(float(logits.max()), rel=1e-4)


def test_top_context_really_has_the_highest_activation_when_recomputed():
    fs = features()
    sae, model = trained("topk")[0], tiny("llama")
    _, held = stores()
    store = ActivationStore(held)
    grid = heldout_contexts(store, store.manifest["n_contexts"])
    checked = 0
    for f in [int(i) for i in np.argsort(-fs.cols["density"])[:5]]:
        ctxs = fs.contexts(f)
        assert len(ctxs) >= 2
        acts = [c["activation"] for c in ctxs]
        assert acts == sorted(acts, reverse=True)
        recomputed = []
        for c in ctxs:
            ids = grid[c["doc_id"], : c["pos"] + 1]  # the context up to the token: what the model saw
            assert ids[-1].item() == c["window_ids"][c["center"]]
            _, cache = model.run_with_cache(ids[None], names=[HOOK])
            with torch.no_grad():
                recomputed.append(float(sae.encode(cache[HOOK][0, -1])[f]))
        np.testing.assert_allclose(recomputed, acts, rtol=1e-3, atol=1e-4)
        assert int(np.argmax(recomputed)) == 0
        checked += 1
    assert checked == 5
