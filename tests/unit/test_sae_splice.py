"""Splicing an SAE into the model, and ablating or clamping one feature."""

from __future__ import annotations

import pytest
import torch
from sae_testutil import HOOK, trained
from tinymodels import tiny

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError
from neuroscope.interventions import Patch
from neuroscope.sae import SAE, SAEConfig, SpliceSAE, with_sae

TEXT = "the residual stream of a model carries features"


def _clean(model):
    _, cache = model.run_with_cache(TEXT, names=[HOOK])
    return cache[HOOK]


def test_splice_equals_manual_reconstruction():
    model, sae = tiny("llama"), trained("topk")[0]
    x = _clean(model)
    with torch.no_grad():
        manual = model(TEXT, interventions=[Patch(HOOK, sae(x))])
        spliced = model(TEXT, interventions=[SpliceSAE(sae)])
        with with_sae(model, sae):
            ctx = model(TEXT)
    torch.testing.assert_close(spliced, manual)
    torch.testing.assert_close(ctx, manual)
    assert not torch.allclose(model(TEXT), manual)  # removed on exit, and the splice does change things


def test_keep_error_without_edits_is_the_clean_model():
    model, sae = tiny("llama"), trained("topk")[0]
    torch.testing.assert_close(
        model(TEXT, interventions=[SpliceSAE(sae, keep_error=True)]), model(TEXT), rtol=1e-4, atol=1e-4
    )


def test_ablate_and_clamp_one_feature():
    model, sae = tiny("llama"), trained("topk")[0]
    x = _clean(model)
    z = sae.encode(x)
    f = int(z[0].sum(0).argmax())  # a feature that fires on this text
    assert z[0, :, f].max() > 0
    seen = {}

    def grab(t, hook):
        seen["x"] = t

    for iv, expected in (
        (SpliceSAE(sae, ablate=[f], keep_error=True), x - z[..., f : f + 1] * sae.W_dec[f]),
        (SpliceSAE(sae, clamp={f: 5.0}, keep_error=True), x + (5.0 - z[..., f : f + 1]) * sae.W_dec[f]),
    ):
        with torch.no_grad():
            model.run_with_hooks(TEXT, fwd_hooks=[(HOOK, grab)], interventions=[iv])
        torch.testing.assert_close(seen["x"], expected, rtol=1e-4, atol=1e-4)
    # without keep_error the edit applies to the reconstruction
    with torch.no_grad():
        model.run_with_hooks(TEXT, fwd_hooks=[(HOOK, grab)], interventions=[SpliceSAE(sae, ablate=[f])])
    ablated = z.clone()
    ablated[..., f] = 0
    torch.testing.assert_close(seen["x"], sae.decode(ablated), rtol=1e-4, atol=1e-4)


def test_width_mismatch_names_both_widths():
    model = tiny("llama")
    sae = SAE(SAEConfig(d_in=32, d_sae=64, k=4, hook_name=HOOK))
    with pytest.raises(InvalidConfigError, match=rf"d_in=32 but hook {HOOK} has width {model.cfg.d_model}"):
        model(TEXT, interventions=[SpliceSAE(sae)])


def test_feature_index_out_of_range():
    sae = trained("topk")[0]
    with pytest.raises(IndexOutOfRangeError, match="feature 9999"):
        SpliceSAE(sae, ablate=[9999])
