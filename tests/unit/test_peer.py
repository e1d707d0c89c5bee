"""Cross-check against a peer: the same tiny weights in TransformerLens's TransformerBridge."""

from __future__ import annotations

import pytest

import neuroscope as ns
from neuroscope.models.tiny import tiny_hf_model

NAMES = [
    "blocks.0.hook_resid_pre",
    "blocks.1.hook_resid_pre",
    "blocks.0.attn.hook_pattern",
    "blocks.1.attn.hook_pattern",
    "blocks.0.attn.hook_z",
    "blocks.1.attn.hook_z",
    "blocks.0.hook_mlp_out",
    "blocks.1.hook_mlp_out",
]


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_same_activations_as_transformer_lens(model_type, tmp_path):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    hf, tok = tiny_hf_model(model_type)
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    bridge = TransformerBridge.boot_transformers(
        str(tmp_path),
        hf_model=tiny_hf_model(model_type)[0],
        tokenizer=AutoTokenizer.from_pretrained(tmp_path),
    )
    ours = ns.load_model(str(tmp_path))
    ids = ours.to_tokens("Hello world, hello there, general Kenobi")
    _, c_ours = ours.run_with_cache(ids, names=NAMES)
    _, c_tl = bridge.run_with_cache(ids, names_filter=lambda n: n in NAMES)
    for n in NAMES:
        assert c_tl[n].shape == c_ours[n].shape, n
        assert (c_tl[n] - c_ours[n]).abs().max().item() <= 1e-4, n
