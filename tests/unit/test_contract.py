"""The one contract every adapter must meet, run over the whole table of tiny random models."""

from __future__ import annotations

import math

import pytest
import torch

from neuroscope.models.tiny import tiny_hf_model

PROMPTS = ["The cat sat on the mat.", "Hello"]


def test_hooked_equals_plain_huggingface(any_tiny):
    plain, _ = tiny_hf_model(any_tiny.cfg.model_type)  # a separate, untouched Hugging Face model
    tokens = any_tiny.tokenize(PROMPTS)
    ref = plain(input_ids=tokens.ids, attention_mask=tokens.attention_mask).logits
    ours = any_tiny(PROMPTS)
    assert (ours - ref).abs().max().item() <= 1e-5
    # and with every hook cached (patterns take the eager path)
    logits, _ = any_tiny.run_with_cache(PROMPTS)
    assert (logits - ref).abs().max().item() <= 1e-5


def test_hook_shapes(any_tiny):
    c = any_tiny.cfg
    _, cache = any_tiny.run_with_cache(PROMPTS)
    b, p = any_tiny.to_tokens(PROMPTS).shape
    assert set(cache.keys()) == set(any_tiny.hook_names())
    for l in range(c.n_layers):
        for h in (
            "hook_resid_pre",
            "hook_resid_post",
            "hook_attn_out",
            "hook_mlp_out",
            "ln1.hook_normalized",
        ):
            assert cache[f"blocks.{l}.{h}"].shape == (b, p, c.d_model), h
        assert cache["pattern", l].shape == (b, c.n_heads, p, p)
        assert cache["attn_scores", l].shape == (b, c.n_heads, p, p)
        assert cache["z", l].shape == (b, p, c.n_heads, c.d_head)
        assert cache["q", l].shape == (b, p, c.n_heads, c.d_head)
        assert cache["k", l].shape == (b, p, c.n_kv_heads, c.d_head)
        assert cache["v", l].shape == (b, p, c.n_kv_heads, c.d_head)
        assert cache["post", l].shape == (b, p, c.d_mlp)
        assert cache["pre", l].shape == (b, p, c.d_mlp)
    assert cache["ln_final.hook_normalized"].shape == (b, p, c.d_model)


def test_residual_stream_identities(any_tiny):
    c = any_tiny.cfg
    _, cache = any_tiny.run_with_cache(PROMPTS)
    for l in range(c.n_layers):
        pre, post = cache["resid_pre", l], cache["resid_post", l]
        if l + 1 < c.n_layers:
            assert torch.equal(post, cache["resid_pre", l + 1])
        if c.parallel_attn_mlp:
            torch.testing.assert_close(
                pre + cache["attn_out", l] + cache["mlp_out", l], post, atol=1e-5, rtol=1e-5
            )
            assert f"blocks.{l}.hook_resid_mid" not in any_tiny.hook_names()
        else:
            mid = cache["resid_mid", l]
            torch.testing.assert_close(pre + cache["attn_out", l], mid, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(mid + cache["mlp_out", l], post, atol=1e-6, rtol=1e-6)


def test_patterns_are_causal_distributions(any_tiny):
    _, cache = any_tiny.run_with_cache(PROMPTS, names=lambda n: n.endswith("hook_pattern"))
    for l in range(any_tiny.cfg.n_layers):
        pat = cache["pattern", l]
        torch.testing.assert_close(pat.sum(-1), torch.ones_like(pat.sum(-1)), atol=1e-5, rtol=0)
        upper = torch.triu(torch.ones(pat.shape[-2:], dtype=torch.bool), diagonal=1)
        assert pat[..., upper].abs().max().item() == 0.0


def test_final_norm_and_unembed_give_logits(any_tiny):
    logits, cache = any_tiny.run_with_cache(PROMPTS, names=["ln_final.hook_normalized"])
    recon = any_tiny.unembed(cache["ln_final.hook_normalized"])
    torch.testing.assert_close(recon, logits, atol=1e-4, rtol=1e-4)


def test_heads_through_W_O_sum_to_attn_out(any_tiny):
    m = any_tiny
    _, cache = m.run_with_cache(PROMPTS)
    for l in range(m.cfg.n_layers):
        per_head = torch.einsum("bphd,hdm->bphm", cache["z", l], m.W_O(l))
        total = per_head.sum(2) + m.b_O(l)
        if m.adapter.sites["hook_attn_out"].module != m.adapter.sites["attn.hook_z"].module.rsplit(".", 1)[0]:
            # Gemma 2/3: attn_out is the post-attention norm of the projection
            total = m.layer_module(l, m.adapter.sites["hook_attn_out"].module)(total)
        torch.testing.assert_close(total, cache["attn_out", l], atol=1e-5, rtol=1e-4)


def test_padded_batch_matches_single_prompts(any_tiny):
    batch = any_tiny(PROMPTS)
    for i, p in enumerate(PROMPTS):
        single = any_tiny(p)
        n = single.shape[1]
        torch.testing.assert_close(batch[i, :n], single[0], atol=1e-4, rtol=1e-4)


def test_stop_at_layer_skips_the_rest(any_tiny):
    logits, cache = any_tiny.run_with_cache(PROMPTS, names=lambda n: "resid" in n, stop_at_layer=1)
    assert logits is None
    assert "blocks.0.hook_resid_post" in cache
    assert "blocks.1.hook_resid_post" not in cache
    _, full = any_tiny.run_with_cache(PROMPTS, names=["blocks.0.hook_resid_post"])
    assert torch.equal(cache["resid_post", 0], full["resid_post", 0])


def test_skipping_early_layers_with_their_cached_output(any_tiny):
    """Partial recomputation: skip blocks < L and patch resid_pre[L] from a cached run; logits are unchanged."""
    from neuroscope.interventions import Patch

    logits, cache = any_tiny.run_with_cache(PROMPTS, names=["blocks.1.hook_resid_pre"])
    seen = []
    fast, _ = any_tiny.run_with_cache(
        PROMPTS,
        names=[],
        skip_below=1,
        interventions=[Patch("blocks.1.hook_resid_pre", cache)],
        fwd_hooks=[("blocks.0.hook_mlp_out", lambda x, h: seen.append(h.name))],
    )
    assert seen == []  # block 0 really did not run
    torch.testing.assert_close(fast, logits, atol=1e-5, rtol=1e-5)


def test_a_reused_prefix_and_rows_joining_later_give_the_full_runs_values(any_tiny):
    """``prefix``: the recorded keys and values stand in for the first positions; ``grow``: rows that join at
    a layer's input, from a cached residual, continue exactly as the run they were cut from."""
    from neuroscope.errors import InvalidConfigError
    from neuroscope.models.prefix import record_prefix

    m = any_tiny
    ids = m.to_tokens("The cat sat on the mat")
    n = ids.shape[1]
    full, cache = m.run_with_cache(ids, names=lambda name: "resid_pre" in name)
    kv = record_prefix(m, ids)
    assert kv is not None  # every tiny adapter has a usable cache
    for p in (1, n // 2, n - 1):  # the start, the middle and the last position
        logits, part = m.run_with_cache(ids, names=["blocks.1.hook_resid_pre"], prefix=kv.upto(p))
        torch.testing.assert_close(logits, full[:, p:], atol=1e-5, rtol=0)
        torch.testing.assert_close(part["resid_pre", 1], cache["resid_pre", 1][:, p:], atol=1e-5, rtol=0)
    # two rows start at layer 0, a third joins at layer 1 from the cached residual: all three are the plain run
    p = n // 2
    pre = [cache["resid_pre", l][:, p:] for l in range(2)]
    logits, _ = m.run_with_cache(
        ids, names=[], prefix=kv.upto(p), skip_below=0, grow={0: pre[0].expand(2, -1, -1), 1: pre[1]}
    )
    assert logits is not None and logits.shape[0] == 3
    torch.testing.assert_close(logits, full[:, p:].expand(3, -1, -1), atol=1e-5, rtol=0)
    with pytest.raises(InvalidConfigError):  # the keys belong to other tokens
        m.run_with_cache(m.to_tokens("A dog sat on the mat"), prefix=kv.upto(2))


def test_logits_to_keep_is_the_tail_of_the_full_logits(any_tiny):
    model = any_tiny
    full = model("The cat sat on the mat")
    last = model("The cat sat on the mat", logits_to_keep=1)
    assert last.shape == (1, 1, model.cfg.d_vocab)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-5, rtol=0)
    logits, cache = model.run_with_cache(
        "The cat sat on the mat", names=["blocks.0.hook_resid_post"], logits_to_keep=2
    )
    assert logits is not None and logits.shape[1] == 2
    torch.testing.assert_close(logits, full[:, -2:], atol=1e-5, rtol=0)


def test_attached_edits_leave_the_unedited_model_and_its_hooks_alone(any_tiny):
    """With a LoRA edit attached (peft wraps the embedding and output projections) but not selected, the
    model is still the plain Hugging Face model, hooks sit on the wrappers, and W_O still reads the weights."""
    import neuroscope as ns
    from neuroscope.edits import EditHost, ablation_edit
    from neuroscope.sae import SAE, SAEConfig

    model = ns.load_model(f"tiny:{any_tiny.cfg.model_type}", device="cpu")  # its own copy: edits wrap layers
    c = model.cfg
    sae = SAE(SAEConfig(d_in=c.d_model, d_sae=32, hook_name=f"blocks.{c.n_layers - 1}.hook_resid_post"))
    EditHost.of(model).add("e", ablation_edit(model, sae, [1, 2], rank=4))
    plain, _ = tiny_hf_model(c.model_type)
    tokens = model.tokenize(PROMPTS)
    ref = plain(input_ids=tokens.ids, attention_mask=tokens.attention_mask).logits
    assert (model(PROMPTS) - ref).abs().max().item() <= 1e-5
    _, cache = model.run_with_cache(PROMPTS[0])
    for l in range(c.n_layers - 1):
        assert torch.allclose(cache["resid_post", l], cache["resid_pre", l + 1])
    total = torch.einsum("bphd,hdm->bpm", cache["z", 0], model.W_O(0)) + model.b_O(0)
    if (
        model.adapter.sites["hook_attn_out"].module
        != model.adapter.sites["attn.hook_z"].module.rsplit(".", 1)[0]
    ):
        total = model.layer_module(0, model.adapter.sites["hook_attn_out"].module)(
            total
        )  # Gemma 2/3 post-norm
    torch.testing.assert_close(total, cache["attn_out", 0], atol=1e-5, rtol=1e-4)
    with EditHost.of(model).use(["e"]):
        assert (model(PROMPTS) - ref).abs().max().item() > 1e-3


@pytest.mark.parametrize("ablate", [False, True], ids=["plain", "ablated"])
def test_dla_heads_neurons_and_components_add_up(any_tiny, ablate):
    """Direct logit attribution is exact on every adapter (post-sublayer norms and biases included): each
    layer's heads (+ b_O) sum to its attention term, its neurons (+ b_out) to its MLP term, and all components to
    the logit difference, within 1e-4 relative; also under head and neuron ablations."""
    from neuroscope.analysis.residual import direct_logit_attribution
    from neuroscope.analysis.run import Run
    from neuroscope.interventions import Ablate

    m = any_tiny
    ivs = [Ablate(heads=[(1, 2)]), Ablate(neurons=[(0, 5)])] if ablate else []
    run = Run.of(m, PROMPTS[0], interventions=ivs)
    r = direct_logit_attribution(run, answer="l", wrong="o")
    err = r.additivity_error()
    assert err["heads"] <= 1e-4 and err["neurons"] <= 1e-4 and err["components"] <= 1e-4, err
    assert len(r.head_map) == m.cfg.n_layers and len(r.head_map[0]) == m.cfg.n_heads
    assert len(r.neuron_map[0]) == m.cfg.d_mlp
    if ablate:
        assert r.head_map[1][2] == 0.0 and r.neuron_map[0][5] == 0.0
    # the sum is the model's own output: its logit difference, or through the soft-cap its logit
    with torch.no_grad():
        last = m(PROMPTS[0], interventions=ivs)[0, -1].float()
    a, w = r.answer_id, r.wrong_id
    cap = m.cfg.final_logit_softcap
    if not cap:
        assert abs(r.total - float(last[a] - last[w])) <= 1e-4 * max(1.0, abs(r.total))
    else:
        single = direct_logit_attribution(run, answer="l")
        assert single.additivity_error()["components"] <= 1e-4
        assert abs(cap * math.tanh(single.total / cap) - float(last[a])) <= 1e-4 * max(
            1.0, abs(float(last[a]))
        )


def test_attribution_graph_edges_equal_interventions(any_tiny):
    """An attribution graph over transcoders (circuit-tracer's definitions) on every adapter: sampled edges
    (feature, error and token sources; feature and logit targets) equal the change a real intervention makes in
    the replacement model with patterns, norm scales, feature activations and errors frozen."""
    from transcoders_testutil import random_transcoders

    from neuroscope.transcoders.attribution import AttributionConfig, attribute
    from neuroscope.transcoders.checks import check_edges
    from neuroscope.transcoders.replacement import ReplacementModel

    rm = ReplacementModel(any_tiny, random_transcoders(any_tiny))
    g = attribute(rm, "The cat sat", AttributionConfig(max_feature_nodes=None))
    sampled = check_edges(rm, g, n=40)  # 40 nonzero edges
    grid = [(t, s) for t in (g.n_features // 2, g.logit_offset) for s in range(0, g.logit_offset, 9)]
    r = check_edges(rm, g, pairs=grid)  # zeros included: an edge the graph lacks must have no effect
    assert len(sampled.checks) == 40 and sampled.max_rel_error <= 1e-4, sampled.max_rel_error
    assert r.max_rel_error <= 1e-4, r.max_rel_error


def test_attribution_scores_are_one_when_the_error_terms_are_zero(any_tiny):
    """On every adapter: transcoders that reproduce one prompt's MLPs exactly (error terms zero) give an
    attribution graph whose replacement and completeness scores are 1, with edges still equal to
    interventions."""
    from transcoders_testutil import exact_transcoders, random_transcoders

    from neuroscope.transcoders.attribution import AttributionConfig, attribute, prepare_tokens
    from neuroscope.transcoders.checks import check_edges
    from neuroscope.transcoders.replacement import ReplacementModel

    tokens = prepare_tokens(any_tiny, "The cat sat")
    run = ReplacementModel(any_tiny, random_transcoders(any_tiny)).record(tokens)
    rm = ReplacementModel(any_tiny, exact_transcoders(any_tiny, run))
    g = attribute(rm, tokens, AttributionConfig(max_feature_nodes=None))
    s = g.scores()
    assert abs(s.replacement - 1.0) < 1e-4 and abs(s.completeness - 1.0) < 1e-4, s
    assert check_edges(rm, g, n=20).max_rel_error < 1e-4
