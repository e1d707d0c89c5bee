"""LoRA edits: the closed-form ablation equals the hooked ProjectOut on every adapter where it is exact (and
says so where it is not), peft per-row adapters keep rows apart, several edits add up, a saved edit is a
plain PEFT adapter, and distillation fits the hooked clamp."""

from __future__ import annotations

import threading

import pytest
import torch
from edits_testutil import fresh, random_sae, save_hf, tokens

from neuroscope.bundles.merge import export_merged
from neuroscope.edits import (
    ClampFeature,
    DistillConfig,
    EditHost,
    ablation_edit,
    ablation_reference,
    build_edit,
    load_edit,
    orthonormal_directions,
)
from neuroscope.edits.host import combine
from neuroscope.errors import RankOutOfRangeError, UnknownFeatureError, UnsafeFormatError
from neuroscope.models.tiny import TINY_TYPES


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from threads; a busy machine loses a lot
    yield
    torch.set_num_threads(n)


EXACT = {"llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gpt_neox"}  # tiny gpt_neox: zero biases
FEATS = [3, 7, 11]


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_ablation_edit_equals_hooked_project_out(model_type):
    model = fresh(model_type)
    sae = random_sae(model)
    edit = ablation_edit(model, sae, FEATS, rank=4)
    host = EditHost.of(model)
    host.add("a", edit)
    t = tokens(model)
    with torch.no_grad():
        base = model(t)
        with host.use(["a"]):
            lora = model(t)
        hooked = model(
            t, interventions=ablation_reference(model, edit.info["hook"], orthonormal_directions(sae, FEATS))
        )
        after = model(t)
    assert torch.equal(after, base)  # nothing leaks out of the context
    assert (lora - base).abs().max() > 0.1  # the edit does something
    diff = float((lora - hooked).abs().max())
    if model_type in EXACT:
        assert edit.info["exact"] and edit.info["inexact_reasons"] == []
        assert diff <= 1e-4
    else:
        assert not edit.info["exact"] and edit.info["inexact_reasons"]
        assert diff > 1e-4


def test_output_biases_make_the_closed_form_inexact():
    model = fresh("gpt_neox")
    with torch.no_grad():
        model.hf_model.gpt_neox.layers[0].attention.dense.bias.normal_(0, 0.5)
    edit = ablation_edit(model, random_sae(model), FEATS, rank=4)
    assert not edit.info["exact"] and "biases" in edit.info["inexact_reasons"][0]


def test_hooks_see_the_edited_stream():
    """Hook points move onto peft's wrappers: hook_embed and resid_post show the edit, not the base."""
    model = fresh("llama")
    sae = random_sae(model)
    host = EditHost.of(model)
    host.add("a", ablation_edit(model, sae, FEATS, rank=4))
    Q = orthonormal_directions(sae, FEATS).float()
    L = model.cfg.n_layers - 1
    with torch.no_grad(), host.use(["a"]):
        _, cache = model.run_with_cache(tokens(model), names=["hook_embed", f"blocks.{L}.hook_resid_post"])
    for name in ("hook_embed", f"blocks.{L}.hook_resid_post"):
        x = cache[name]
        assert float((x @ Q).abs().max()) <= 1e-4 * float(x.abs().max())


def test_rows_get_their_own_edits_and_several_edits_add_up(tmp_path):
    model = fresh("llama")
    sae = random_sae(model)
    e1, e2 = ablation_edit(model, sae, [3], rank=4), ablation_edit(model, sae, [40, 41], rank=4)
    host = EditHost.of(model)
    host.add("a", e1)
    host.add("b", e2)
    t = tokens(model)
    with torch.no_grad():
        single = {}
        for names in ([], ["a"], ["b"], ["a", "b"]):
            with host.use(names):
                single[tuple(names)] = model(t)
        rows = [[], ["a"], ["b"], ["a", "b"]]
        batch = t[[0, 0, 0, 0]]
        with host.rows(rows):
            mixed = model(batch)
    for i, names in enumerate(rows):
        assert torch.allclose(mixed[i], single[tuple(names)][0], atol=1e-5)
    # two edits at once = both deltas in the weights (the merged model, loaded by plain transformers)
    from transformers import AutoModelForCausalLM

    export_merged(model, [e1, e2], tmp_path / "merged")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        ref = plain(input_ids=t).logits
    assert float((ref - single[("a", "b")]).abs().max()) <= 1e-4
    assert combine([e1, e2]).rank == 8
    host.remove("a")
    assert host.names() == ["b"]


def test_threads_with_different_edits_do_not_mix():
    model = fresh("llama")
    sae = random_sae(model)
    host = EditHost.of(model)
    host.add("a", ablation_edit(model, sae, [3], rank=4))
    t = tokens(model)
    with torch.no_grad():
        expect = {"a": None, "": None}
        with host.use(["a"]):
            expect["a"] = model(t)
        expect[""] = model(t)
    errors = []

    def worker(name: str) -> None:
        for _ in range(20):
            with torch.no_grad(), host.use([name] if name else []):
                out = model(t)
            if not torch.allclose(out, expect[name], atol=1e-5):
                errors.append(name)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "", "a", "")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


def test_saved_edit_is_a_plain_peft_adapter(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = fresh("llama")
    folder = save_hf(model, tmp_path / "hf")  # before any edit wraps its layers
    sae = random_sae(model)
    edit = ablation_edit(model, sae, FEATS, rank=8)
    edit.save(tmp_path / "lora" / "x")
    host = EditHost.of(model)
    host.add("x", load_edit(tmp_path / "lora" / "x"))
    t = tokens(model)
    with torch.no_grad(), host.use(["x"]):
        ours = model(t)
    plain = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(folder), str(tmp_path / "lora" / "x")
    )
    with torch.no_grad():
        theirs = plain(input_ids=t).logits
    assert float((ours - theirs).abs().max()) <= 1e-4
    assert float((ours - model(t)).abs().max()) > 0.1


def test_rank_and_feature_errors(tmp_path):
    model = fresh("llama")
    sae = random_sae(model)
    for rank in (3, 17):
        with pytest.raises(RankOutOfRangeError, match="4..16"):
            ablation_edit(model, sae, [1], rank=rank)
    with pytest.raises(RankOutOfRangeError, match="5 independent directions need rank >= 5"):
        ablation_edit(model, sae, [1, 2, 3, 4, 5], rank=4)
    with pytest.raises(UnknownFeatureError, match=f"0..{sae.d_sae - 1}"):
        ablation_edit(model, sae, [sae.d_sae], rank=4)
    folder = tmp_path / "bad"
    ablation_edit(model, sae, [1], rank=4).save(folder)
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(UnsafeFormatError, match="pickle"):
        load_edit(folder)
    assert EditHost.of(model).names() == []


def test_clamp_reference_changes_only_where_the_feature_fires():
    model = fresh("llama")
    sae = random_sae(model)
    t = tokens(model)
    hook = sae.cfg.hook_name
    with torch.no_grad():
        _, cache = model.run_with_cache(t, names=[hook])
        z = sae.encode(cache[hook])
        f = int((z[:, 1:] > 0).float().mean((0, 1)).argmax())
        _, edited = model.run_with_cache(t, names=[hook], interventions=[ClampFeature(sae, [f], value=7.0)])
    fired = z[..., f] > 0
    fired[:, 0] = False
    assert fired.any() and (~fired).any()
    # where it fires the SAE's code of the stream now reads 7 for f: the stream moved by (7 - z_f) W_dec[f]
    moved = edited[hook] - cache[hook]
    expect = (7.0 - z[..., f])[..., None] * sae.W_dec[f]
    assert torch.allclose(moved[fired], expect[fired], atol=1e-4)
    same = ~fired
    assert torch.allclose(edited[hook][same], cache[hook][same])


def test_clamp_distillation_gets_closer_than_doing_nothing(tmp_path):
    """On the tiny model's trained SAE and the synthetic corpus: a mid-density feature clamped to twice its
    maximum; the distilled LoRA's held-out KL to the hooked clamp is below the KL of doing nothing."""
    from sae_testutil import trained, write_corpus

    from neuroscope.edits import corpus_contexts
    from neuroscope.edits.reference import feature_acts

    model = fresh("llama")
    sae, _, _ = trained()
    contexts = corpus_contexts(model, write_corpus(tmp_path / "c.jsonl", 60, 5), 200, 32)
    z = feature_acts(model, sae, contexts, range(sae.d_sae))
    density = (z.amax(1) > 0).float().mean(0)
    f = int((density - 0.5).abs().argmin())
    value = 2 * float(z[..., f].max())
    edit = build_edit(
        model, sae, [f], "clamp", value=value, rank=4, contexts=contexts, cfg=DistillConfig(steps=60, lr=1e-2)
    )
    d = edit.info["distill"]
    assert d["heldout_kl_hooked_to_base"]["fire"] > 1e-4
    assert d["heldout_kl_hooked_to_base"]["quiet"] == 0.0  # the clamp changes nothing where f is silent
    assert d["heldout_kl_hooked_to_edit"]["fire"] < 0.9 * d["heldout_kl_hooked_to_base"]["fire"]
    assert d["heldout_kl_hooked_to_edit"]["quiet"] < d["heldout_kl_hooked_to_base"]["fire"]
    assert edit.info["method"] == "clamp" and edit.info["value"] == value
    assert EditHost.of(model).names() == []  # the training adapter is gone
    assert set(edit.modules) == {
        f"model.layers.{l}.{m}"
        for l in range(model.cfg.n_layers)
        for m in ("self_attn.o_proj", "mlp.down_proj")
    }
