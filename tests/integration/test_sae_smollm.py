"""SAE pipeline on the bundled smollm2-135m (layer 15 residual): record → train (small SAE) → evaluate →
features, with the top context re-checked through the real model. Kept short: ~6k tokens, 1152 latents."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.record.reader import ActivationStore
from neuroscope.record.writer import TraceConfig, record
from neuroscope.sae import SAE, SAEConfig, SpliceSAE, TrainConfig
from neuroscope.sae.evaluate import evaluate_sae, heldout_contexts
from neuroscope.sae.features import FeatureConfig, FeatureStore, compute_features
from neuroscope.sae.train import train_sae

pytestmark = pytest.mark.integration
HOOK = "blocks.15.hook_resid_post"


@functools.cache
def _pipeline(model, corpus: Path):
    """Record the real corpus (python3-doc prose: train and held-out pages), train a small SAE on it."""
    root = Path(tempfile.mkdtemp(prefix="sae-int-"))
    for name, tokens in (("train", 6144), ("heldout", 1024)):
        cfg = TraceConfig(
            hooks=(HOOK,),
            data=str(corpus),
            split=name,
            tokens=tokens,
            ctx_len=64,
            batch_size=8,
            shard_tokens=2048,
            dtype="float32",
        )
        record(model, cfg, root / name, progress=False)
    torch.manual_seed(0)
    sae, result = train_sae(
        root / "train",
        tcfg=TrainConfig(batch_size=512, epochs=6, lr=2e-3, progress=False, dead_tokens=4096),
        out=root / "sae",
        arch="topk",
        k=16,
        expansion=2,
    )
    return root, sae, result


def test_train_and_evaluate_on_the_real_model(smollm, real_corpus):
    root, sae, result = _pipeline(smollm, real_corpus)
    assert result.history[-1]["fvu"] < 0.6 * result.history[0]["fvu"]
    r = evaluate_sae(sae, root / "heldout", smollm, ce_contexts=8)
    print(
        f"SAE: train FVU {result.history[0]['fvu']:.3f} -> {result.history[-1]['fvu']:.3f}; held-out FVU "
        f"{r.fvu:.4f}, CE recovered {r.ce_loss_recovered:.4f} (clean {r.ce_clean:.3f}, spliced {r.ce_spliced:.3f}, "
        f"zero {r.ce_zero_ablation:.3f})"
    )
    assert r.l0 == 16.0 and r.d_in == 576
    assert r.fvu < 0.5
    # the reconstruction is far better for the model than deleting the residual stream
    assert max(r.ce_clean, r.ce_spliced) < r.ce_zero_ablation
    assert r.ce_loss_recovered > 0.5


def test_top_contexts_recomputed_through_the_real_model(smollm, real_corpus):
    root, sae, _ = _pipeline(smollm, real_corpus)
    out = compute_features(
        sae, root / "heldout", smollm, root / "features", FeatureConfig(top_contexts=5, n_examples=16)
    )
    fs = FeatureStore(out)
    store = ActivationStore(root / "heldout")
    grid = heldout_contexts(store, store.manifest["n_contexts"])
    f = int(fs.table(sort="max_activation", descending=True, limit=1)[0]["id"])
    ctxs = fs.contexts(f)
    recomputed = []
    with torch.no_grad():
        for c in ctxs:
            _, cache = smollm.run_with_cache(grid[c["doc_id"], : c["pos"] + 1][None], names=[HOOK])
            recomputed.append(float(sae.encode(cache[HOOK][0, -1])[f]))
    assert int(np.argmax(recomputed)) == 0
    np.testing.assert_allclose(recomputed, [c["activation"] for c in ctxs], rtol=2e-2, atol=1e-3)
    detail = fs.feature(f)
    assert len(detail["logit_top_tokens"]) == 10 and len(detail["logit_bottom_tokens"]) == 10


def test_splice_on_real_model_and_width_error(smollm, real_corpus):
    _, sae, _ = _pipeline(smollm, real_corpus)
    text = "The river flooded the valley after three days of rain."
    with torch.no_grad():
        clean = smollm(text)
        same = smollm(text, interventions=[SpliceSAE(sae, keep_error=True)])
    torch.testing.assert_close(same, clean, rtol=1e-3, atol=1e-3)
    small = SAE(SAEConfig(d_in=64, d_sae=128, k=4, hook_name=HOOK))
    with pytest.raises(InvalidConfigError, match=rf"d_in=64 but hook {HOOK} has width 576"):
        smollm(text, interventions=[SpliceSAE(small)])
