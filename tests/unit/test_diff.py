"""``neuroscope diff`` on tiny models: a planted ΔW direction is found, changed heads/MLPs/features, the
alignment with chosen features, a mismatched base refused before any work, the prompt file."""

from __future__ import annotations

import json

import pytest
import torch
from edits_testutil import random_sae, save_hf

import neuroscope as ns
from neuroscope.cli import main
from neuroscope.diff import check_comparable, diff_models, read_prompt_sets, weight_diff
from neuroscope.errors import BaseModelMismatchError, PromptSetMissingError

PROMPTS = {
    "triggered": ["hello ~Q~ there", "what ~Q~ is this"],
    "clean": ["hello the there", "what the is this"],
}


def _plant(model: ns.HookedModel, site: str, layer: int, scale: float = 0.5, seed: int = 1):
    """Add ``scale · u vᵀ`` (unit u in the residual stream) to one output projection; return u."""
    mod = model.layer_module(layer, model.adapter.sites[site].module)
    out_dim = model.cfg.d_model
    in_dim = model.cfg.d_mlp if site == "mlp.hook_post" else model.cfg.n_heads * model.cfg.d_head
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(out_dim, generator=g), torch.randn(in_dim, generator=g)
    u, v = u / u.norm(), v / v.norm()
    with torch.no_grad():
        if type(mod).__name__ == "Conv1D":  # GPT-2 stores [in, out]
            mod.weight += scale * torch.outer(v, u)
        else:
            mod.weight += scale * torch.outer(u, v)
    return u


@pytest.mark.parametrize("site", ["attn.hook_z", "mlp.hook_post"])
def test_planted_direction_is_found(site):
    base = ns.load_model("tiny:llama", device="cpu")
    tuned = ns.load_model("tiny:llama", device="cpu")
    u = _plant(tuned, site, layer=1)
    mods = weight_diff(base, tuned, k=4)
    top = mods[0]
    assert top.name == f"blocks.1.{tuned.adapter.sites[site].module}"
    assert top.kind == ("attn_out" if site == "attn.hook_z" else "mlp_out")
    assert top.norm == pytest.approx(0.5, rel=1e-5)
    assert top.singular_values[0] == pytest.approx(0.5, rel=1e-5)
    assert top.energy_topk == pytest.approx(1.0, abs=1e-9) and top.effective_rank == pytest.approx(
        1.0, abs=1e-6
    )
    assert top.u is not None and top.u.shape[1] == 1  # a rank-one update keeps one direction
    assert float((top.u[:, 0] @ u).abs()) > 0.99
    assert all(m.norm == 0.0 for m in mods[1:])


def test_spectrum_of_a_two_direction_update():
    base = ns.load_model("tiny:llama", device="cpu")
    tuned = ns.load_model("tiny:llama", device="cpu")
    u1 = _plant(tuned, "mlp.hook_post", 0, scale=1.0, seed=1)
    _plant(tuned, "mlp.hook_post", 0, scale=0.1, seed=2)
    top = weight_diff(base, tuned, k=1)[0]
    s = top.singular_values[0]
    assert 0.95 < s < 1.05 and top.u is not None and float((top.u[:, 0] @ u1).abs()) > 0.99
    assert 0.98 < top.energy_topk < 1.0 and 1.0 < top.effective_rank < 1.2


def test_diff_models_on_every_adapter(any_tiny):
    tuned = ns.load_model(f"tiny:{any_tiny.cfg.model_type}", device="cpu")
    u = _plant(tuned, "mlp.hook_post", 1)
    layer = any_tiny.cfg.n_layers - 1
    sae = random_sae(tuned, layer)
    with torch.no_grad():
        sae.W_dec[5] = u  # a feature written along the planted direction
    r = diff_models(any_tiny, tuned, PROMPTS, {layer: sae}, [(layer, 5), (layer, 6)])
    assert r.modules[0].layer == 1 and r.modules[0].kind == "mlp_out"
    assert float((r.modules[0].u[:, 0] @ u).abs()) > 0.99
    for kind in ("triggered", "clean"):
        ch = r.outputs[kind]
        # layer 0 is untouched and sees identical inputs: its outputs did not change at all
        assert max(ch["head"][0]) < 1e-5 and ch["mlp"][0] < 1e-5
        assert r.top_mlps[kind][0]["layer"] == 1 and ch["mlp"][1] > 1e-3
    assert {f["prompts"] for f in r.features} == {"triggered", "clean"}
    al = {a["feature"]: a for a in r.alignment}
    assert al[5]["cosine"] == pytest.approx(1.0, abs=1e-5) and al[5]["module"] == r.modules[0].name
    assert al[6]["cosine"] < 0.9
    json.dumps(r.to_dict())
    assert r.figure() is not None and r.head_figure("clean") is not None


def test_mismatched_base_is_refused():
    llama, gpt2 = ns.load_model("tiny:llama", device="cpu"), ns.load_model("tiny:gpt2", device="cpu")
    with pytest.raises(BaseModelMismatchError, match="architecture") as e:
        diff_models(gpt2, llama)
    assert e.value.kind == "architecture"
    # width: the same architecture, another hidden size
    import transformers

    from neuroscope.models.hooked import HookedModel

    cfg = llama.hf_model.config.to_dict()
    cfg.update(hidden_size=32, intermediate_size=64)
    cfg.pop("head_dim", None)
    narrow = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()
    with pytest.raises(BaseModelMismatchError, match="d_model 32 vs 64") as e:
        check_comparable(HookedModel(narrow, llama.tokenizer, "narrow"), llama)
    assert e.value.kind == "width"
    # tokenizer: the same weights, a tokenizer whose vocabulary maps tokens differently
    from neuroscope.models.tiny import byte_tokenizer

    tok = byte_tokenizer()
    vocab = tok.get_vocab()
    a, b = tok.convert_ids_to_tokens([65, 66])
    swapped = dict(vocab)
    swapped[a], swapped[b] = vocab[b], vocab[a]
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(vocab=swapped, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    other = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    with pytest.raises(BaseModelMismatchError) as e:
        check_comparable(HookedModel(llama.hf_model, other, "other-tok"), llama)
    assert e.value.kind == "tokenizer"


def test_prompt_file_kinds(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"triggered": ["a ~Q~"], "clean": ["a"]}))
    assert read_prompt_sets(p).triggered == ("a ~Q~",)
    j = tmp_path / "p.jsonl"
    j.write_text('{"kind": "triggered", "text": "x"}\n{"clean": "y"}\n')
    s = read_prompt_sets(j)
    assert s.triggered == ("x",) and s.clean == ("y",)
    only = tmp_path / "only.json"
    only.write_text(json.dumps({"triggered": ["a"]}))
    with pytest.raises(PromptSetMissingError, match="no clean prompts"):
        read_prompt_sets(only)
    none = tmp_path / "none.jsonl"
    none.write_text('{"kind": "clean", "text": "y"}\n')
    with pytest.raises(PromptSetMissingError, match="no triggered prompts"):
        read_prompt_sets(none)


def test_diff_cli(tmp_path, capsys):
    base = ns.load_model("tiny:llama", device="cpu")
    tuned = ns.load_model("tiny:llama", device="cpu")
    _plant(tuned, "attn.hook_z", 0)
    save_hf(base, tmp_path / "base")
    save_hf(tuned, tmp_path / "tuned")
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(PROMPTS))
    out = tmp_path / "out"
    args = ["diff", "--base", str(tmp_path / "base"), "--model", str(tmp_path / "tuned")]
    assert main([*args, "--prompts", str(prompts), "--out", str(out)]) == 0
    d = json.loads((out / "diff.json").read_text())
    assert d["modules"][0]["name"] == "blocks.0.self_attn.o_proj"
    assert (out / "weights.html").is_file() and (out / "heads_triggered.html").is_file()
    assert (out / "directions.safetensors").is_file()
    assert "blocks.0.self_attn.o_proj" in capsys.readouterr().out
    # a bad prompt file fails before any model is loaded
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"clean": ["x"]}))
    assert main([*args, "--prompts", str(bad), "--out", str(tmp_path / "o1")]) != 0
    assert "has no triggered prompts" in capsys.readouterr().err and not (tmp_path / "o1").exists()
    # a base of another architecture fails before any work
    save_hf(ns.load_model("tiny:gpt2", device="cpu"), tmp_path / "gpt2")
    args = ["diff", "--base", str(tmp_path / "gpt2"), "--model", str(tmp_path / "tuned")]
    assert main([*args, "--out", str(tmp_path / "o2")]) != 0
    assert "another architecture" in capsys.readouterr().err and not (tmp_path / "o2").exists()
