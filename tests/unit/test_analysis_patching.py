"""Batched patching sweeps vs one forward per patch; attribution and path patching on tiny models."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from patching_testutil import patch_loop

import neuroscope as ns
from neuroscope.analysis import _sweep, figures, patching
from neuroscope.analysis._util import pearson
from neuroscope.errors import ShapeMismatchError
from neuroscope.interventions import Patch
from neuroscope.models.prefix import record_prefix, supports_prefix
from neuroscope.models.tiny import TINY_TYPES

CLEAN, CORRUPTED = "abcab", "abdab"
LONG_CLEAN, LONG_CORRUPTED = "abcab xyzzy", "abdab xyzzy"  # 12 positions with BOS: a middle worth the name


@functools.cache
def tiny(name: str) -> ns.HookedModel:
    return ns.load_model(f"tiny:{name}", device="cpu")


def _setup(m):
    return patching.prepare(m, CLEAN, CORRUPTED, "c", "d")


def _max_diff(a: patching.PatchingResult, b: patching.PatchingResult) -> float:
    # compare logit differences: a random tiny model's clean/corrupted gap can be small, which would
    # magnify float noise in the normalised values
    return float(np.nanmax(np.abs(np.asarray(a.logit_diffs) - np.asarray(b.logit_diffs))))


@pytest.mark.parametrize("name", TINY_TYPES)
def test_sweep_equals_the_loop_on_every_adapter(name):
    """Every (layer, position) of resid_pre, so patches at the first, middle and last positions; with the
    corrupted run's keys and values reused, and without (the fallback, every position computed)."""
    m = tiny(name)
    s = patching.prepare(m, LONG_CLEAN, LONG_CORRUPTED, "c", "d")
    loop = patch_loop(m, s, "resid_pre")
    fast = patching.patch_sweep(m, s, "resid_pre", batch_size=4)
    full = patching.patch_sweep(m, s, "resid_pre", batch_size=4, prefix=False)
    assert _max_diff(fast, loop) <= 1e-5 and _max_diff(full, loop) <= 1e-5
    assert np.isfinite(fast.array()).all()
    assert fast.n_forwards < loop.n_forwards


@pytest.mark.parametrize(
    "name,site",
    [
        ("llama", "resid_mid"),
        ("llama", "resid_post"),
        ("llama", "attn_out"),
        ("llama", "mlp_out"),
        ("llama", "z"),
        ("llama", "z_pos"),
        ("gpt2", "z_pos"),
        ("gemma2", "attn_out"),
        ("gemma3_text", "z"),
        ("gpt_neox", "resid_post"),
        ("phi3", "mlp_out"),
    ],
)
def test_sweep_equals_the_loop_at_every_site(name, site):
    m = tiny(name)
    s = _setup(m)
    loop = patch_loop(m, s, site)
    for prefix in (True, False):
        # batch_size 2: several forwards, each starting at a later layer and (with the prefix) position
        fast = patching.patch_sweep(m, s, site, batch_size=2, prefix=prefix)
        assert _max_diff(fast, loop) <= 1e-5
    sub = patching.patch_sweep(m, s, site, layers=[1])  # layer 0 skipped entirely
    assert _max_diff(sub, patch_loop(m, s, site, layers=[1])) <= 1e-5
    lean = patch_loop(m, s, site, layers=[1], lean=True)
    assert _max_diff(lean, patch_loop(m, s, site, layers=[1])) <= 1e-5


def test_a_sliding_window_shorter_than_the_prompt():
    """Mistral's window of 4 positions over a 12-position prompt: the reused keys cover every position and
    the mask, built from absolute positions, keeps the window."""
    m = ns.load_model("tiny:mistral", device="cpu")
    m.hf_model.config.sliding_window = 4
    s = patching.prepare(m, LONG_CLEAN, "abcab xyzqy", "c", "d")  # a change the last position can see
    assert m(s.corrupted).sub(tiny("mistral")(s.corrupted)).abs().max() > 1e-3  # the window matters
    loop = patch_loop(m, s, "resid_pre")
    assert _max_diff(patching.patch_sweep(m, s, "resid_pre", batch_size=3), loop) <= 1e-5


def test_a_model_without_a_reusable_cache_falls_back():
    m = ns.load_model("tiny:llama", device="cpu")
    m.hf_model.config.num_kv_shared_layers = 1  # as Gemma 3n: layers that read another layer's keys
    assert not supports_prefix(m) and record_prefix(m, m.to_tokens("abc")) is None
    s = _setup(m)
    fast = patching.patch_sweep(m, s, "resid_pre")
    assert fast.n_forwards == 2 + 1  # clean, corrupted, one batch of every position; no prefix recorded
    assert _max_diff(fast, patch_loop(m, s, "resid_pre")) <= 1e-5


def test_the_planner_groups_patches_by_position_and_layer():
    units = [(l, p) for l in range(30) for p in range(14)]
    chunks = _sweep.plan("resid_pre", units, 30, 14, 64 * 14, reuse=True)
    assert sorted(u for c in chunks for u in c.rows) == units  # each patch exactly once
    for c in chunks:
        assert c.start == min(u[1] for u in c.rows)  # a forward starts at its first patched position
        assert list(c.rows) == sorted(c.rows)  # rows by layer: they join the batch in that order
        assert len(c.rows) * (14 - c.start) <= 64 * 14
    assert max(c.start for c in chunks) > 0  # later positions get forwards of their own
    no_reuse = _sweep.plan("resid_pre", units, 30, 14, 64 * 14, reuse=False)
    assert {c.start for c in no_reuse} == {0} and [len(c.rows) for c in no_reuse][0] == 64
    z = _sweep.plan("z", [(l, h) for l in range(2) for h in range(4)], 2, 5, 10, reuse=True)
    assert {c.start for c in z} == {0} and all(len(c.rows) <= 2 for c in z)


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
