"""The replacement model: exact with its error terms, frozen runs reproduce the real one, interventions act
where they say, bad input is refused by name."""

from __future__ import annotations

import pytest
import torch
from transcoders_testutil import exact_transcoders, random_transcoders

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, SAEMismatchError
from neuroscope.transcoders.model import TranscoderSet
from neuroscope.transcoders.replacement import FeatureIntervention, ReplacementModel

PROMPT = "The cat sat on the mat"


def test_with_error_terms_the_logits_are_the_real_models(any_tiny):
    model = any_tiny
    rm = ReplacementModel(model, random_transcoders(model))
    toks = model.to_tokens(PROMPT)[0]
    real = model(toks[None])
    run = rm.record(toks)
    live = rm.forward(toks, errors="live").logits
    fixed = rm.forward(toks, errors="fixed", features="frozen", freeze=run).logits
    off = rm.forward(toks, errors="off").logits
    torch.testing.assert_close(live, real, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fixed, real, atol=1e-4, rtol=1e-4)
    assert (off - real).abs().max() > 1e-2  # random transcoders are not the MLPs


def test_exact_transcoders_need_no_error_terms(tiny_llama):
    model = tiny_llama
    toks = model.to_tokens(PROMPT)[0]
    run = ReplacementModel(model, random_transcoders(model)).record(toks)
    rm = ReplacementModel(model, exact_transcoders(model, run))
    for layer in rm.layers:
        assert rm.errors(run, layer).abs().max() < 1e-4
    torch.testing.assert_close(rm.forward(toks, errors="off").logits, model(toks[None]), atol=1e-4, rtol=1e-4)


def test_frozen_intervention_adds_its_decoder_vector(tiny_llama):
    model = tiny_llama
    rm = ReplacementModel(model, random_transcoders(model))
    toks = model.to_tokens(PROMPT)[0]
    run = rm.record(toks)
    acts = rm.clean_activations(run, 0)
    pos, feat = 3, int(acts[3].argmax())
    base = rm.forward(toks, errors="fixed", features="frozen", freeze=run)
    iv = FeatureIntervention(0, pos, feat, 2.5, mode="scale")
    new = rm.forward(toks, errors="fixed", features="frozen", freeze=run, interventions=[iv])
    delta = new.mlp_out[0] - base.mlp_out[0]
    want = torch.zeros_like(delta)
    want[0, pos] = 1.5 * acts[pos, feat] * rm.transcoder(0).W_dec[feat]
    torch.testing.assert_close(delta, want, atol=1e-5, rtol=1e-4)
    assert (
        new.logits[0, :pos] - base.logits[0, :pos]
    ).abs().max() < 1e-5  # causal: earlier positions unmoved
    assert (new.logits[0, -1] - base.logits[0, -1]).abs().max() > 1e-4
    same = rm.forward(
        toks, errors="live", interventions=[FeatureIntervention(0, pos, feat, float(acts[pos, feat]))]
    )
    torch.testing.assert_close(same.logits, model(toks[None]), atol=1e-4, rtol=1e-4)


def test_bad_input_is_refused_by_name(tiny_llama):
    model = tiny_llama
    tcs = random_transcoders(model)
    rm = ReplacementModel(model, tcs)
    toks = model.to_tokens(PROMPT)[0]
    with pytest.raises(IndexOutOfRangeError, match="position"):
        rm.forward(toks, interventions=[FeatureIntervention(0, 99, 0, 1.0)])
    with pytest.raises(IndexOutOfRangeError, match="feature"):
        rm.forward(toks, interventions=[FeatureIntervention(0, 1, 10_000, 1.0)])
    with pytest.raises(InvalidConfigError):
        FeatureIntervention(0, 1, 1, 1.0, mode="double")
    with pytest.raises(InvalidConfigError, match="recorded run"):
        rm.forward(toks, errors="fixed")
    with pytest.raises(SAEMismatchError, match="trained on"):
        ReplacementModel(model, TranscoderSet("another-model", dict(tcs.transcoders)))
