"""Batched patching sweeps vs one forward per patch; attribution and path patching on tiny models."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import neuroscope as ns
from neuroscope.analysis import figures, patching
from neuroscope.analysis._util import pearson
from neuroscope.errors import ShapeMismatchError
from neuroscope.interventions import Patch

CLEAN, CORRUPTED = "abcab", "abdab"


@functools.cache
def tiny(name: str) -> ns.HookedModel:
    return ns.load_model(f"tiny:{name}", device="cpu")


def _setup(m):
    return patching.prepare(m, CLEAN, CORRUPTED, "c", "d")


@pytest.mark.parametrize(
    "name,site",
    [
        ("llama", "resid_pre"),
        ("llama", "resid_mid"),
        ("llama", "attn_out"),
        ("llama", "mlp_out"),
        ("llama", "z"),
        ("llama", "z_pos"),
        ("gpt2", "resid_pre"),
        ("gemma2", "z"),
        ("gpt_neox", "resid_post"),
    ],
)
def test_batched_sweep_equals_loop(name, site):
    m = tiny(name)
    s = _setup(m)
    batched = patching.patch_sweep(
        m, s, site, layers=[1], batch_size=5
    )  # chunks start mid-model: layer skipping
    loop = patching.patch_loop(m, s, site, layers=[1])
    # compare logit differences: a random tiny model's clean/corrupted gap can be small, which would
    # magnify float noise in the normalised values
    diff = np.nanmax(np.abs(np.asarray(batched.logit_diffs) - np.asarray(loop.logit_diffs)))
    assert diff <= 1e-4
    assert batched.n_forwards < loop.n_forwards
    lean = patching.patch_loop(m, s, site, layers=[1], lean=True)
    assert np.nanmax(np.abs(np.asarray(lean.logit_diffs) - np.asarray(loop.logit_diffs))) <= 1e-4


def test_reported_values_are_the_patched_models_logits(tiny_llama, tmp_path):
    m = tiny_llama
    s = _setup(m)
    r = patching.patch_sweep(m, s, "resid_pre")
    _, clean = m.run_with_cache(CLEAN)
    for layer, pos in [(0, 3), (1, 2), (1, 5)]:
        with torch.no_grad():
            logits = m(
                CORRUPTED, interventions=[Patch(f"blocks.{layer}.hook_resid_pre", clean, positions=[pos])]
            )
        ld = float(s.ld(logits))
        assert abs(r.logit_diffs[layer][pos] - ld) <= 1e-4
        assert abs(r.values[layer][pos] - s.normalise(ld)) <= 1e-4
    # patching the whole residual stream at layer 0 restores the clean run
    assert abs(sum(r.values[0][p] for p in [3]) - 1.0) < 1e-4 or abs(max(r.values[0]) - 1.0) < 1e-4
    figures.write(r.figure(), tmp_path / "patch.html")


def test_attribution_patching_tracks_exact_head_patching(tiny_llama, tmp_path):
    s = _setup(tiny_llama)
    approx = patching.attribution_patching(tiny_llama, s, "z")
    exact = patching.patch_sweep(tiny_llama, s, "z")
    assert approx.array().shape == exact.array().shape
    assert pearson(approx.array(), exact.array()) >= 0.7
    figures.write(approx.figure(), tmp_path / "attr.html")


def _attribution_two_passes(m, s, site):
    """The textbook route, independent of the paired batch: a clean forward, then a corrupted forward whose
    activations are kept (still inside the graph), full logits, autograd on the logit difference."""
    names = [patching.hook_for(site, l) for l in range(m.cfg.n_layers)]
    with torch.no_grad():
        _, clean = m.run_with_cache(s.clean, names=names)
    leaves = {}

    def leaf(x, hook):
        # the first site starts the graph (weights are frozen); later ones are tensors of their own inside it
        leaves[hook.name] = x.detach().requires_grad_(True) if hook.name == names[0] else x * 1.0
        return leaves[hook.name]

    with torch.enable_grad():
        logits = m.run_with_hooks(s.corrupted, fwd_hooks=[(nm, leaf) for nm in names])
        grads = torch.autograd.grad(s.ld(logits).sum(), [leaves[nm] for nm in names])
    out = []
    for nm, g in zip(names, grads, strict=True):
        delta = ((clean[nm] - leaves[nm].detach()) * g)[0]
        out.append(delta.sum((0, 2)) if site == "z" else delta.sum(-1))
    return torch.stack(out).numpy() + s.corrupted_ld


@pytest.mark.parametrize(
    "name,site", [("llama", "z"), ("llama", "resid_pre"), ("gpt2", "z"), ("gemma2", "resid_post")]
)
def test_attribution_patching_equals_the_two_pass_gradient(name, site):
    m = tiny(name)
    s = _setup(m)
    fast = patching.attribution_patching(m, s, site)
    ref = _attribution_two_passes(m, s, site)
    assert np.abs(np.asarray(fast.logit_diffs) - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert np.abs(ref - s.corrupted_ld).max() > 1e-3  # the estimates are not all zero


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma2", "gpt_neox"])
def test_final_ld_equals_the_logits(name):
    m = tiny(name)
    s = _setup(m)
    n = m.cfg.n_layers
    with torch.no_grad():
        logits, cache = m.run_with_cache(s.corrupted, names=[f"blocks.{n - 1}.hook_resid_post"])
        fast = s.final_ld(m, cache["resid_post", n - 1][:, -1])
    assert abs(float(fast) - float(s.ld(logits))) <= 1e-5


def test_path_patching_endpoints(tiny_llama, tmp_path):
    m = tiny_llama
    s = _setup(m)
    every = [(l, h) for l in range(2) for h in range(4)]
    r = patching.path_patching(m, s, [[], every, [(0, 1)]])
    assert abs(r.values[0]) < 1e-5  # no sender: the corrupted run
    assert abs(r.values[1] - 1.0) < 1e-4  # every head clean and MLPs recomputed: the clean run
    recv = patching.path_patching(m, s, [[(0, h)] for h in range(4)], receivers=[(1, 0, "q"), (1, 1, "v")])
    assert len(recv.values) == 4 and all(np.isfinite(recv.values))
    figures.write(recv.figure(2, 4), tmp_path / "path.html")


def test_mismatched_lengths_are_rejected(tiny_llama):
    with pytest.raises(ShapeMismatchError):
        patching.prepare(tiny_llama, "abc", "abcd", "a", "b")
