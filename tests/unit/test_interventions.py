"""Interventions, each checked by an independent route (by hand, or by what it must leave unchanged)."""

from __future__ import annotations

import threading

import pytest
import torch

from neuroscope.interventions import Ablate, Hook, Noise, Patch, ProjectOut, Steer

PROMPT = "The quick brown fox jumps over the lazy dog"
OTHER = "A slow green turtle crawls under the busy cat"


def test_zero_ablating_a_head_changes_only_that_head(tiny_llama):
    m = tiny_llama
    _, clean = m.run_with_cache(PROMPT, names=["blocks.1.attn.hook_z"])
    _, ablated = m.run_with_cache(
        PROMPT, names=["blocks.1.attn.hook_z"], interventions=[Ablate(heads=[(1, 2)])]
    )
    z0, z1 = clean["z", 1], ablated["z", 1]
    assert torch.equal(z1[:, :, 2], torch.zeros_like(z1[:, :, 2]))
    others = [h for h in range(m.cfg.n_heads) if h != 2]
    assert torch.equal(z1[:, :, others], z0[:, :, others])


def test_zero_ablation_equals_zeroing_o_proj_input_by_hand(tiny_llama):
    m = tiny_llama
    d_head = m.cfg.d_head
    o_proj = m.layer_module(1, "self_attn.o_proj")

    def by_hand(module, args):
        x = args[0].clone()
        x[..., 2 * d_head : 3 * d_head] = 0
        return (x,)

    handle = o_proj.register_forward_pre_hook(by_hand)
    try:
        expected = m.hf_model(m.to_tokens(PROMPT)).logits
    finally:
        handle.remove()
    got = m(PROMPT, interventions=[Ablate(heads=[(1, 2)])])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    assert (got - m(PROMPT)).abs().max() > 1e-4  # the ablation did something


def test_neuron_ablation_zeroes_the_neuron(tiny_llama):
    _, cache = tiny_llama.run_with_cache(
        PROMPT, names=["blocks.0.mlp.hook_post"], interventions=[Ablate(neurons=[(0, 5), (0, 7)])]
    )
    assert cache["post", 0][..., [5, 7]].abs().max() == 0


def test_mean_and_resample_ablation_use_the_reference(tiny_llama):
    m = tiny_llama
    ref = [OTHER, PROMPT]
    _, rc = m.run_with_cache(ref, names=["blocks.0.attn.hook_z"])
    _, c = m.run_with_cache(
        PROMPT,
        names=["blocks.0.attn.hook_z"],
        interventions=[Ablate(heads=[(0, 1)], mode="mean", reference=ref)],
    )
    mean = rc["z", 0][:, :, 1].mean(dim=(0, 1))
    torch.testing.assert_close(c["z", 0][0, :, 1], mean.expand_as(c["z", 0][0, :, 1]))
    _, c2 = m.run_with_cache(
        PROMPT,
        names=["blocks.0.attn.hook_z"],
        interventions=[Ablate(heads=[(0, 1)], mode="resample", reference=[OTHER])],
    )
    n = c2["z", 0].shape[1]
    torch.testing.assert_close(c2["z", 0][0, :, 1], rc["z", 0][0, :n, 1])


def test_steer_with_alpha_zero_and_self_patch_change_nothing(tiny_llama):
    m = tiny_llama
    base = m(PROMPT)
    v = torch.randn(m.cfg.d_model)
    assert torch.equal(m(PROMPT, interventions=[Steer(layer=1, vector=v, alpha=0.0)]), base)
    _, cache = m.run_with_cache(PROMPT)
    patches = [
        Patch("blocks.1.hook_resid_pre", cache),
        Patch("blocks.0.attn.hook_z", cache, heads=[1]),
        Patch("blocks.1.attn.hook_pattern", cache),
    ]
    # the pattern patch takes the eager attention path, so agreement is to float rounding, not bitwise
    torch.testing.assert_close(m(PROMPT, interventions=patches), base, atol=1e-5, rtol=1e-5)
    assert (m(PROMPT, interventions=[Steer(layer=1, vector=v, alpha=3.0)]) - base).abs().max() > 1e-3


def test_patching_layer0_resid_pre_reproduces_the_other_prompt(any_tiny):
    m = any_tiny
    a, b = m.to_tokens(PROMPT), m.to_tokens(OTHER)
    n = min(a.shape[1], b.shape[1])
    a, b = a[:, :n], b[:, :n]
    b_logits, b_cache = m.run_with_cache(b, names=["blocks.0.hook_resid_pre"])
    patched = m(a, interventions=[Patch("blocks.0.hook_resid_pre", b_cache)])
    torch.testing.assert_close(patched, b_logits, atol=1e-5, rtol=1e-5)


def test_project_out_leaves_no_component(tiny_llama):
    m = tiny_llama
    d = torch.randn(m.cfg.d_model)
    u = d / d.norm()
    _, cache = m.run_with_cache(
        PROMPT, names=lambda n: n.endswith("resid_post"), interventions=[ProjectOut(d)]
    )
    for l in range(m.cfg.n_layers):
        assert (cache["resid_post", l] @ u).abs().max() < 1e-5
    _, plain = m.run_with_cache(PROMPT, names=["blocks.0.hook_resid_post"])
    assert (plain["resid_post", 0] @ u).abs().max() > 1e-3


def test_positions_and_noise(tiny_llama):
    m = tiny_llama
    v = torch.ones(m.cfg.d_model)
    _, base = m.run_with_cache(PROMPT, names=["blocks.1.hook_resid_pre"])
    _, c = m.run_with_cache(
        PROMPT, names=["blocks.1.hook_resid_pre"], interventions=[Steer(1, v, 2.0, positions=[3])]
    )
    diff = (c["resid_pre", 1] - base["resid_pre", 1]).abs().amax(-1)[0]
    assert diff[3] > 1.9 and diff[[0, 1, 2, 4]].max() == 0
    n1 = m(PROMPT, interventions=[Noise("blocks.0.hook_resid_post", std=0.5, seed=3)])
    n2 = m(PROMPT, interventions=[Noise("blocks.0.hook_resid_post", std=0.5, seed=3)])
    n3 = m(PROMPT, interventions=[Noise("blocks.0.hook_resid_post", std=0.5, seed=4)])
    assert torch.equal(n1, n2) and not torch.equal(n1, n3)


def test_interventions_compose_in_order_and_never_leak(tiny_llama):
    m = tiny_llama
    base = m(PROMPT)
    seen = []
    ivs = [
        Steer(0, torch.ones(m.cfg.d_model), 1.0, site="resid_post"),
        Hook("blocks.0.hook_resid_post", lambda x, hook: seen.append(x.mean().item())),
    ]
    _, plain = m.run_with_cache(PROMPT, names=["blocks.0.hook_resid_post"])
    m(PROMPT, interventions=ivs)
    assert (
        seen and abs(seen[0] - (plain["resid_post", 0].mean().item() + 1.0)) < 1e-4
    )  # Hook saw the steered value
    with pytest.raises(RuntimeError), m.hooks(interventions=[Ablate(heads=[(0, 0)])]):
        raise RuntimeError("boom")
    assert torch.equal(m(PROMPT), base)
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.hf_model.modules())


def test_resid_mid_can_be_written(tiny_llama):
    m = tiny_llama
    v = torch.randn(m.cfg.d_model)
    _, c = m.run_with_cache(
        PROMPT,
        names=["blocks.0.hook_resid_mid", "blocks.0.hook_resid_post", "blocks.0.hook_mlp_out"],
        interventions=[Steer(0, v, 1.0, site="resid_mid")],
    )
    _, base = m.run_with_cache(PROMPT, names=["blocks.0.hook_resid_mid"])
    torch.testing.assert_close(c["resid_mid", 0], base["resid_mid", 0] + v, atol=1e-5, rtol=1e-5)
    # the steered resid_mid really is the residual stream the MLP adds to
    torch.testing.assert_close(c["resid_post", 0] - c["mlp_out", 0], c["resid_mid", 0], atol=1e-5, rtol=1e-5)


def test_two_threads_with_different_interventions(tiny_llama):
    m = tiny_llama
    heads = [(0, 0), (1, 3), None, (1, 1)]
    expected = {h: m(PROMPT, interventions=[Ablate(heads=[h])] if h else []) for h in heads}
    errors, barrier = [], threading.Barrier(len(heads))

    def worker(h):
        try:
            barrier.wait()
            for _ in range(15):
                got = m(PROMPT, interventions=[Ablate(heads=[h])] if h else [])
                if not torch.equal(got, expected[h]):
                    errors.append(h)
        except Exception as e:  # noqa: BLE001 - report any failure from the thread
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(h,)) for h in heads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({tuple(v.flatten()[:5].tolist()) for v in expected.values()}) == len(heads)


def test_generate_with_positions_during_cached_decoding(tiny_llama):
    m = tiny_llama
    out1 = m.generate("Hello", max_new_tokens=8)
    out2 = m.generate("Hello", max_new_tokens=8)
    assert out1 == out2
    steered = m.generate(
        "Hello", max_new_tokens=8, interventions=[Steer(1, torch.randn(m.cfg.d_model) * 5, 4.0)]
    )
    assert steered != out1
