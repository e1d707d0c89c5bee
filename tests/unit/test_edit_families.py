"""Edit families: each hooked edit does what it says (several features' projections vanish, a gate leaves
sub-threshold positions untouched and clamps the rest exactly, head edits set hook_z slices), the closed forms
equal their hooked edits on every adapter where exact, distillation fits any hooked edit (and stops with its
figures when it breaks clean text), the exported adapter runs the same in plain transformers + peft, and the
manifest says when goals are missed."""

from __future__ import annotations

import json

import pytest
import torch
from edits_testutil import diff_of_means, fresh, random_sae, tokens, trigger_sets

from neuroscope.edits import EditHost
from neuroscope.edits.distill import DistillConfig
from neuroscope.edits.families import (
    direction_gates,
    export_edit,
    feature_gates,
    gated_edit,
    head_edit,
    multi_feature_ablate,
    realise,
)
from neuroscope.edits.gated import GatedEdit
from neuroscope.edits.heads import parse_heads
from neuroscope.edits.host import combine
from neuroscope.edits.multi import feature_directions, parse_layer_features
from neuroscope.edits.prompts import prompt_data
from neuroscope.edits.verify import meets_goals
from neuroscope.errors import (
    DistillationFailedError,
    EmptyPromptSetError,
    InvalidConfigError,
    RankOutOfRangeError,
)
from neuroscope.models.tiny import TINY_TYPES


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


EXACT = {"llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gpt_neox"}
PAIRS = [(0, 3), (0, 7), (1, 3), (1, 11)]


def _saes(model):
    return {0: random_sae(model, 0, seed=1), 1: random_sae(model, 1, seed=2)}


def _lora_vs_hooked(model, lora, interventions, t):
    host = EditHost.of(model)
    host.add("e", lora)
    try:
        with torch.no_grad():
            hooked = model(t, interventions=interventions)
            base = model(t)
            with host.use(["e"]):
                edited = model(t)
    finally:
        host.remove("e")
    return float((edited - hooked).abs().max()), float((hooked - base).abs().max())


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_closed_forms_equal_their_hooked_edits(model_type):
    """The contract table: several features read at two layers, and a zeroed head, as LoRAs."""
    model = fresh(model_type)
    t = tokens(model)
    multi = multi_feature_ablate(model, _saes(model), PAIRS, rank=8)
    assert multi.closed_form is not None
    diff, moved = _lora_vs_hooked(model, multi.closed_form, multi.interventions, t)
    assert moved > 0.1
    if model_type in EXACT:
        assert multi.closed_form.info["exact"] and diff <= 1e-4
    else:
        assert not multi.closed_form.info["exact"] and multi.closed_form.info["inexact_reasons"]
    # a zeroed head is exact everywhere (o_proj's own input columns; biases and post-norms come after)
    heads = head_edit(model, parse_heads("1.2"), rank=16)
    assert heads.closed_form is not None and heads.closed_form.info["delta_rank"] == {1: model.cfg.d_head}
    diff, moved = _lora_vs_hooked(model, heads.closed_form, heads.interventions, t)
    assert moved > 1e-3 and diff <= 1e-4


def test_several_features_vanish_at_their_read_points_and_per_layer_sums_would_not_be_exact():
    model = fresh("llama")
    saes = _saes(model)
    t = tokens(model)
    multi = multi_feature_ablate(model, saes, PAIRS, rank=8)
    dirs = feature_directions(model, saes, PAIRS)
    with torch.no_grad():
        _, cache = model.run_with_cache(t, names=list(dirs), interventions=multi.interventions)
    for hook, D in dirs.items():
        proj = cache[hook].double() @ D  # every selected decoder row, read where its SAE reads
        assert float(proj.abs().max()) < 1e-4, hook
    # layer 1's directions are also removed before layer 0 (they are read after it): the union, not a sum
    assert multi.closed_form is not None and multi.closed_form.info["span_dims"] == 4
    one = {
        h: multi_feature_ablate(model, saes, [p for p in PAIRS if p[0] == l], 4) for l, h in enumerate(dirs)
    }
    summed = combine([e.closed_form for e in one.values()])  # type: ignore[misc]
    diff, _ = _lora_vs_hooked(model, summed, multi.interventions, t)
    assert diff > 1e-3  # random decoder rows overlap: summing per-layer edits is not the exact edit
    with pytest.raises(InvalidConfigError, match="LAYER:FEATURE"):
        parse_layer_features("3")
    assert parse_layer_features("16:1, 20:5") == [(16, 1), (20, 5)]


@pytest.mark.parametrize("mode", ["zero", "clean", "excess"])
def test_gate_leaves_quiet_positions_alone_and_clamps_the_rest_exactly(mode):
    model = fresh("llama")
    triggered, clean = trigger_sets()
    data = prompt_data(model, triggered, clean)
    hook = "blocks.0.hook_resid_post"
    d = diff_of_means(model, data, hook)
    g = gated_edit(model, direction_gates([(hook, d)], mode), data["quiet_train"], data["quiet_train_mask"])
    gate = g.interventions[0]
    assert isinstance(gate, GatedEdit)
    th = g.chosen["gates"][0]
    assert th["rule"].startswith("max of the score over") and th["value"] == th["clean_max"]
    u = d / d.norm()
    ids = data["fire_train"]
    with torch.no_grad():
        _, before = model.run_with_cache(ids, names=[hook])
        _, after = model.run_with_cache(ids, names=[hook], interventions=[gate])
    s = before[hook] @ u
    above = s > gate.threshold
    above[:, 0] = False
    assert above.any() and (~above).any()
    assert torch.equal(after[hook][~above], before[hook][~above])
    level = {"zero": 0.0, "clean": th["clean_level"], "excess": th["value"]}[mode]
    torch.testing.assert_close((after[hook] @ u)[above], torch.full_like(s[above], level), atol=1e-4, rtol=0)
    # an SAE latent gate moves the stream along the feature's decoder row by (level - z)
    sae = random_sae(model, 0, seed=1)
    with torch.no_grad():
        z = sae.encode(before[hook])
    f = int((z[:, 1:] > 0).float().mean((0, 1)).argmax())
    fg = feature_gates({0: sae}, [(0, f)], mode)[0]
    fg = GatedEdit(fg.hook, 0.5 * float(z[..., f].max()), mode, sae=sae, feature=f, clean_level=0.1)
    with torch.no_grad():
        _, fed = model.run_with_cache(ids, names=[hook], interventions=[fg])
    on = z[..., f] > fg.threshold
    on[:, 0] = False
    level = {"zero": 0.0, "clean": 0.1, "excess": fg.threshold}[mode]
    expect = (level - z[..., f])[..., None] * sae.W_dec[f]
    torch.testing.assert_close((fed[hook] - before[hook])[on], expect[on], atol=1e-4, rtol=1e-4)
    assert torch.equal(fed[hook][~on], before[hook][~on])


def test_head_edits_set_hook_z_slices():
    model = fresh("llama")
    t = tokens(model)
    ref = model.tokenize(["a reference text for mean ablation", "and another one"]).ids
    name = "blocks.1.attn.hook_z"
    with torch.no_grad():
        _, base = model.run_with_cache(t, names=[name])
        _, refc = model.run_with_cache(ref, names=[name])
        _, zero = model.run_with_cache(
            t, names=[name], interventions=head_edit(model, parse_heads("1.2@last")).interventions
        )
        mean_edit = head_edit(model, parse_heads("1.0,1.3"), mode="mean", reference=ref)
        _, mean = model.run_with_cache(t, names=[name], interventions=mean_edit.interventions)
    assert float(zero[name][:, -1, 2].abs().max()) == 0.0
    assert torch.equal(zero[name][:, :-1], base[name][:, :-1]) and torch.equal(
        zero[name][:, -1, :2], base[name][:, -1, :2]
    )
    mu = refc[name].mean((0, 1))
    for h in (0, 3):
        torch.testing.assert_close(mean[name][:, :, h], mu[h].expand_as(mean[name][:, :, h]))
    assert torch.equal(mean[name][:, :, 1:3], base[name][:, :, 1:3])
    assert mean_edit.closed_form is None and "distil" in mean_edit.closed_form_note
    assert zero[name].shape[2] == model.cfg.n_heads  # query heads (GQA: 2 key/value heads here)
    two = head_edit(model, parse_heads("1.0,1.1"), rank=16)  # rank 32 > 16: the LoRA must be distilled
    assert two.closed_form is None and "rank-32 change" in two.closed_form_note
    from neuroscope.edits.heads import head_ablation_edit

    with pytest.raises(RankOutOfRangeError, match="rank-32 change .* distil"):
        head_ablation_edit(model, parse_heads("1.0,1.1"), rank=16)
    with pytest.raises(InvalidConfigError, match="LAYER.HEAD"):
        parse_heads("1-2")


def _gated(model, data):
    hook = "blocks.0.hook_resid_post"
    d = diff_of_means(model, data, hook)
    return gated_edit(
        model, direction_gates([(hook, d)], "zero"), data["quiet_train"], data["quiet_train_mask"]
    )


def test_distilled_gate_gets_close_exports_to_plain_peft_and_says_when_it_misses_goals(tmp_path):
    model = fresh("llama")
    triggered, clean = trigger_sets()
    data = prompt_data(model, triggered, clean)
    g = _gated(model, data)
    lora = realise(model, g, data, rank=4, cfg=DistillConfig(steps=30, lr=1e-2, layers_back=1))
    d = lora.info["distill"]
    assert d["targets"] == {"fire": "the hooked edit", "quiet": "the unedited model"}
    assert d["heldout_kl_hooked_to_base"]["fire"] > 1e-2 and d["heldout_kl_hooked_to_base"]["quiet"] == 0.0
    assert d["heldout_kl_hooked_to_edit"]["fire"] < 0.25 * d["heldout_kl_hooked_to_base"]["fire"]
    assert d["heldout_kl_hooked_to_edit"]["quiet"] < 0.01
    assert lora.info["measured"]["triggered"]["kl_hooked_to_lora"] == pytest.approx(
        d["heldout_kl_hooked_to_edit"]["fire"], rel=1e-3
    )
    out = export_edit(model, g, lora, tmp_path / "gate", data)
    manifest = json.loads((out / "edit.json").read_text())
    plain = manifest["measured"]["plain_peft"]
    assert plain["max_abs_logit_diff_vs_attached"] <= 1e-4  # the files are the adapter that was measured
    # and they are loaded: the plain model is as close to the hooked edit as the attached LoRA, not the base
    assert plain["triggered_kl_hooked_to_plain"] == pytest.approx(
        manifest["measured"]["triggered"]["kl_hooked_to_lora"], rel=1e-3, abs=1e-6
    )
    assert manifest["family"] == "gated" and manifest["chosen"]["gates"][0]["rule"].startswith("max")
    assert manifest["rank"] == 4 and manifest["distill"]["steps"] == 30
    assert manifest["meets_goals"] is (not manifest["misses"])
    assert set(manifest["goals"]) == {
        "triggered.kl_hooked_to_lora",
        "clean.kl_base_to_lora",
        "plain_peft.max_abs_logit_diff_vs_attached",
    }
    # goals it misses are listed with the amount; unmeasured goals are misses too, never silently met
    out2 = export_edit(
        model,
        g,
        lora,
        tmp_path / "strict",
        data,
        goals={"clean.kl_base_to_lora": 0.0, "attack_success": 0.01},
    )
    strict = json.loads((out2 / "edit.json").read_text())
    assert strict["meets_goals"] is False
    missed = {m["goal"]: m for m in strict["misses"]}
    assert missed["clean.kl_base_to_lora"]["by"] == pytest.approx(
        strict["measured"]["clean"]["kl_base_to_lora"]
    )
    assert missed["attack_success"]["why"] == "not measured"
    assert meets_goals({"a": {"b": 0.5}}, {"a.b": 1.0}) == {
        "meets_goals": True,
        "goals": {"a.b": "<= 1"},
        "misses": [],
    }
    assert EditHost.of(model).names() == []


def test_distillation_stops_with_its_figures(tmp_path):
    model = fresh("llama")
    triggered, clean = trigger_sets()
    data = prompt_data(model, triggered, clean)
    g = _gated(model, data)
    with pytest.raises(DistillationFailedError, match="clean contexts by KL .* over the budget 0") as e:
        realise(model, g, data, rank=4, cfg=DistillConfig(steps=5, lr=1e-2, layers_back=1, max_clean_kl=0.0))
    f = e.value.figures
    assert f["heldout_kl_hooked_to_edit"]["quiet"] > 0 and f["max_clean_kl"] == 0.0 and f["steps"] == 5
    with pytest.raises(DistillationFailedError) as e:
        realise(model, g, data, rank=4, cfg=DistillConfig(steps=3, lr=1e4, layers_back=1))
    assert e.value.figures  # diverged or wrecked clean text: either way, the numbers come with it
    assert EditHost.of(model).names() == []
    with pytest.raises(EmptyPromptSetError, match="clean"):
        prompt_data(model, triggered, clean[:1])


def test_cli_edit_gated_and_ablate(tmp_path, capsys):
    from neuroscope.cli import main
    from neuroscope.sae.io import save_sae

    model = fresh("llama")
    triggered, clean = trigger_sets()
    (tmp_path / "t.txt").write_text("\n".join(triggered))
    (tmp_path / "c.txt").write_text("\n".join(clean))
    common = [
        "--model",
        "tiny:llama",
        "--triggered",
        str(tmp_path / "t.txt"),
        "--clean",
        str(tmp_path / "c.txt"),
    ]
    rc = main(
        [
            "edit",
            "--method",
            "gated",
            "--direction-layers",
            "0",
            "--gate-mode",
            "zero",
            "--rank",
            "4",
            "--steps",
            "30",
            "--lr",
            "1e-2",
            "--layers-back",
            "1",
            "--out",
            str(tmp_path / "g"),
            *common,
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "g" / "edit.json").read_text())
    assert m["family"] == "gated" and m["distilled"] and m["chosen"]["gates"][0]["kind"] == "direction"
    assert m["measured"]["triggered"]["kl_hooked_to_lora"] < m["measured"]["triggered"]["kl_base_to_hooked"]
    assert (tmp_path / "g" / "adapter_model.safetensors").exists()
    save_sae(random_sae(model, 0, seed=1), tmp_path / "s0")
    save_sae(random_sae(model, 1, seed=2), tmp_path / "s1")
    capsys.readouterr()
    rc = main(
        [
            "edit",
            "--method",
            "ablate",
            "--features",
            "0:3,1:3",
            "--sae",
            str(tmp_path / "s0"),
            "--sae",
            str(tmp_path / "s1"),
            "--rank",
            "4",
            "--out",
            str(tmp_path / "a"),
            *common,
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "a" / "edit.json").read_text())
    assert m["exact"] and not m["distilled"] and m["chosen"]["features"] == ["0:3", "1:3"]
    assert m["measured"]["triggered"]["max_abs_logit_diff_vs_hooked"] <= 1e-4
    # an ablation acts on clean text too: over the clean-KL goal, the manifest and stderr say by how much
    kl = m["measured"]["clean"]["kl_base_to_lora"]
    assert kl > 0.05 and m["meets_goals"] is False
    assert m["misses"] == [{"goal": "clean.kl_base_to_lora", "limit": 0.05, "measured": kl, "by": kl - 0.05}]
    assert f"clean.kl_base_to_lora ({kl:.4g} > 0.05)" in capsys.readouterr().err


def test_head_edits_distil_and_refuse_end_positions_on_padded_prompts():
    model = fresh("llama")
    triggered, clean = trigger_sets()
    data = prompt_data(model, triggered, clean)
    edit = head_edit(model, parse_heads("1.0@3+4+5,1.3@3+4+5"), mode="zero")
    assert edit.closed_form is None and edit.clean_target == "base"
    assert {p.rsplit(".", 2)[-2] + "." + p.rsplit(".", 1)[-1] for p in edit.distil_paths or []} >= {
        "self_attn.q_proj",
        "self_attn.o_proj",
        "mlp.down_proj",
    }
    lora = realise(model, edit, data, rank=4, cfg=DistillConfig(steps=20, lr=1e-2, max_clean_kl=None))
    d = lora.info["distill"]
    assert d["heldout_kl_hooked_to_edit"]["fire"] < d["heldout_kl_hooked_to_base"]["fire"]
    with pytest.raises(InvalidConfigError, match="counted from the end"):
        realise(model, head_edit(model, parse_heads("1.0@last")), data, rank=4)
    with pytest.raises(InvalidConfigError, match="no exact closed form"):
        realise(model, _gated(model, data), data, rank=4, distil=False)
