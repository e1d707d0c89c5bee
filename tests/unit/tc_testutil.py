"""Tiny random transcoders for the QK, supernode, intervention and server tests (built in code, seeded)."""

from __future__ import annotations

import torch

from neuroscope.transcoders.model import Transcoder, TranscoderConfig, TranscoderSet

PROMPT = "Hello world, hi"


def random_transcoders(model, d_tc: int = 32, k: int = 4, skip: bool = True, layers=None) -> TranscoderSet:
    """A TopK (skip) transcoder per layer with random decoders: far from the MLP, so error nodes are large
    and every decomposition has to account for them."""
    d = model.cfg.d_model
    out = {}
    for l in range(model.cfg.n_layers) if layers is None else layers:
        tc = Transcoder(
            TranscoderConfig(d, d_tc, l, "topk", k=k, skip=skip, model_name=model.cfg.name), seed=l
        )
        with torch.no_grad():
            tc.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(100 + l))
            if tc.W_skip is not None:
                tc.W_skip.normal_(0, 0.02, generator=torch.Generator().manual_seed(200 + l))
        out[l] = tc
    return TranscoderSet(model.cfg.name, out)
