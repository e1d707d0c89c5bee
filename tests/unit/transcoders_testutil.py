"""Transcoder sets for the tiny models: random ones, and ones that reproduce one prompt's MLPs exactly."""

from __future__ import annotations

import torch

from neuroscope.transcoders.model import Transcoder, TranscoderConfig, TranscoderSet

PROMPT = "Hello world, hi"


def random_transcoders(
    model,
    d_tc: int = 96,
    activation: str = "topk",
    k: int = 6,
    skip: bool = True,
    seed: int = 0,
    layers=None,
) -> TranscoderSet:
    """One transcoder per layer (or per layer in ``layers``) with random weights scaled to the model's MLP
    inputs (features fire)."""
    d = model.cfg.d_model
    gen = torch.Generator().manual_seed(seed)
    tcs = {}
    for layer in range(model.cfg.n_layers) if layers is None else layers:
        cfg = TranscoderConfig(
            d_in=d,
            d_tc=d_tc,
            layer=layer,
            activation=activation,
            k=k if activation == "topk" else None,
            skip=skip,
            model_name=model.cfg.name,
        )
        tc = Transcoder(cfg, seed=seed + layer)
        with torch.no_grad():
            tc.W_enc.copy_(torch.randn(d, d_tc, generator=gen) / d**0.5)
            tc.b_enc.copy_(torch.randn(d_tc, generator=gen) * 0.1)
            tc.W_dec.copy_(torch.randn(d_tc, d, generator=gen) * 0.05)
            tc.b_dec.copy_(torch.randn(d, generator=gen) * 0.01)
            if tc.W_skip is not None:
                tc.W_skip.copy_(torch.randn(d, d, generator=gen) * 0.05)
            if activation == "jumprelu":
                tc.threshold.copy_(torch.rand(d_tc, generator=gen) * 0.2)
        tcs[layer] = tc
    return TranscoderSet(model.cfg.name, tcs)


def exact_transcoders(model, run, skip: bool = True, seed: int = 0) -> TranscoderSet:
    """Transcoders whose output equals every MLP's output on the recorded run (error terms zero up to
    float precision): feature ``p`` fires with activation 1 at position ``p`` only (its encoder solves
    ``mlp_in @ W_enc = I``) and decodes that position's MLP output (minus the skip term and bias)."""
    d = model.cfg.d_model
    n_pos = run.n_pos
    assert n_pos <= d, "one feature per position needs pos <= d_model"
    gen = torch.Generator().manual_seed(seed)
    tcs = {}
    for layer in range(model.cfg.n_layers):
        x = run.mlp_in[layer].double()  # [pos, d]
        cfg = TranscoderConfig(
            d_in=d, d_tc=n_pos + 3, layer=layer, activation="relu", skip=skip, model_name=model.cfg.name
        )
        tc = Transcoder(cfg, seed=seed)
        w_enc = torch.zeros(d, n_pos + 3, dtype=torch.float64)
        w_enc[:, :n_pos] = torch.linalg.pinv(x) @ torch.eye(n_pos, dtype=torch.float64)
        w_skip = torch.randn(d, d, generator=gen, dtype=torch.float64) * 0.05 if skip else None
        b_dec = torch.randn(d, generator=gen, dtype=torch.float64) * 0.01
        target = run.mlp_out[layer].double() - b_dec - (x @ w_skip if w_skip is not None else 0)
        w_dec = torch.zeros(n_pos + 3, d, dtype=torch.float64)
        w_dec[:n_pos] = target
        with torch.no_grad():
            tc.W_enc.copy_(w_enc)
            tc.b_enc.copy_(torch.zeros(n_pos + 3))
            tc.b_enc[n_pos:] = -1.0  # three dead features
            tc.W_dec.copy_(w_dec)
            tc.b_dec.copy_(b_dec)
            if w_skip is not None:
                tc.W_skip.copy_(w_skip)
        tcs[layer] = tc
    return TranscoderSet(model.cfg.name, tcs)
