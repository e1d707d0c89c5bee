"""Every documented error is raised, and its message tells the user what would be right."""

from __future__ import annotations

import pytest
import torch

import neuroscope as ns
from neuroscope.errors import (
    EmptyPromptError,
    IndexOutOfRangeError,
    ModelNotFoundError,
    PromptTooLongError,
    ShapeMismatchError,
    UnknownHookError,
    UnsupportedArchitectureError,
)
from neuroscope.interventions import Ablate, Patch, Steer


def test_unknown_hook_lists_close_matches(tiny_llama):
    with pytest.raises(UnknownHookError) as e:
        tiny_llama.run_with_cache("hi", names=["blocks.0.hook_resid_pree"])
    msg = str(e.value)
    assert "blocks.0.hook_resid_pre" in msg and "model.hook_names()" in msg


def test_layer_and_head_out_of_range(tiny_llama):
    with pytest.raises(IndexOutOfRangeError, match=r"layer 7 is out of range: valid layers are 0\.\.1"):
        tiny_llama.run_with_cache("hi", names=["blocks.7.hook_resid_pre"])
    with pytest.raises(IndexOutOfRangeError, match=r"head 9 is out of range: valid heads are 0\.\.3"):
        tiny_llama("hi", interventions=[Ablate(heads=[(0, 9)])])
    with pytest.raises(IndexOutOfRangeError, match=r"neuron 999 is out of range"):
        tiny_llama("hi", interventions=[Ablate(neurons=[(0, 999)])])
    with pytest.raises(IndexOutOfRangeError, match="token id"):
        tiny_llama(torch.tensor([[1, 2, 100000]]))


def test_empty_prompt(tiny_llama):
    with pytest.raises(EmptyPromptError, match="empty"):
        tiny_llama("")
    with pytest.raises(EmptyPromptError):
        tiny_llama(["ok", ""])
    with pytest.raises(EmptyPromptError):
        tiny_llama(torch.zeros((1, 0), dtype=torch.long))


def test_prompt_too_long(tiny_llama):
    with pytest.raises(PromptTooLongError, match=r"is 301 tokens long but the model's context is 256 tokens"):
        tiny_llama("x" * 300)


def test_model_not_found_says_what_was_tried(tmp_path):
    with pytest.raises(ModelNotFoundError) as e:
        ns.load_model(str(tmp_path / "nothing-here"))
    assert "does not exist" in str(e.value) and "smollm2-135m" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="not cached; NeuroScope never downloads"):
        ns.load_model("some-org/some-model-that-is-not-cached")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        ns.load_model(str(tmp_path / "x.gguf"))


def test_unsupported_architecture_lists_supported():
    with pytest.raises(UnsupportedArchitectureError) as e:
        ns.load_model("tiny:bert")
    assert "tiny:llama" in str(e.value)
    from neuroscope.models.adapters import get_adapter

    with pytest.raises(UnsupportedArchitectureError, match="gemma2, gemma3_text, gpt2, gpt_neox"):
        get_adapter("t5")


def test_shape_mismatch(tiny_llama):
    with pytest.raises(ShapeMismatchError, match=r"expected shape \(64,\), got \(10,\)"):
        tiny_llama("hi", interventions=[Steer(0, torch.zeros(10))])
    with pytest.raises(ShapeMismatchError, match="Patch source"):
        tiny_llama("hello there", interventions=[Patch("blocks.0.hook_resid_pre", torch.zeros(1, 3, 7))])
    with pytest.raises(ShapeMismatchError, match="hook on blocks.0.hook_resid_post returned"):
        tiny_llama.run_with_hooks("hi", fwd_hooks=[("blocks.0.hook_resid_post", lambda x, h: x[:, :1])])


def test_hub_id_loads_from_the_local_cache_only(tmp_path, monkeypatch):
    """A hub id resolves when its snapshot is in the local Hugging Face cache (no network involved)."""
    import huggingface_hub.constants

    from neuroscope.models.tiny import tiny_hf_model

    commit = "0" * 40
    snap = tmp_path / "models--someone--tiny-gpt2" / "snapshots" / commit
    snap.mkdir(parents=True)
    (tmp_path / "models--someone--tiny-gpt2" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-gpt2" / "refs" / "main").write_text(commit)
    hf, tok = tiny_hf_model("gpt2")
    hf.save_pretrained(snap)
    tok.save_pretrained(snap)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    model = ns.load_model("someone/tiny-gpt2")
    assert model.cfg.model_type == "gpt2" and model.cfg.name == "someone/tiny-gpt2"
    torch.testing.assert_close(model("hello"), hf(model.to_tokens("hello")).logits)
