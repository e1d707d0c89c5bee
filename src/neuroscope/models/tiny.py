"""Seeded tiny random models (``tiny:<model_type>``) with a local byte-level tokenizer, for fast tests."""

from __future__ import annotations

from typing import Any

import torch

from neuroscope.errors import UnsupportedArchitectureError

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def byte_tokenizer(add_bos: bool = True):
    """A 259-token byte-level BPE with no merges: every byte is a token, plus BOS/EOS/PAD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for tok in (BOS, EOS, PAD):
        vocab[tok] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    if add_bos:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])]
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _configs(vocab: int) -> dict[str, tuple[str, dict[str, Any]]]:
    common = dict(
        vocab_size=vocab,
        initializer_range=0.1,
        bos_token_id=vocab - 3,
        eos_token_id=vocab - 2,
        pad_token_id=vocab - 1,
    )
    rope = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
        **common,
    )
    return {
        "llama": ("LlamaConfig", dict(rope, num_key_value_heads=2)),
        "mistral": ("MistralConfig", dict(rope, num_key_value_heads=2, sliding_window=128)),
        "qwen2": ("Qwen2Config", dict(rope, num_key_value_heads=2)),
        "qwen3": ("Qwen3Config", dict(rope, num_key_value_heads=2, head_dim=16)),
        "gemma": ("GemmaConfig", dict(rope, num_key_value_heads=1, head_dim=16)),
        "gemma2": (
            "Gemma2Config",
            dict(
                rope,
                num_key_value_heads=2,
                head_dim=16,
                query_pre_attn_scalar=16,
                sliding_window=128,
                attn_logit_softcapping=50.0,
                final_logit_softcapping=30.0,
            ),
        ),
        "gemma3_text": (
            "Gemma3TextConfig",
            dict(
                rope,
                num_key_value_heads=2,
                head_dim=16,
                query_pre_attn_scalar=16,
                sliding_window=128,
                layer_types=["sliding_attention", "full_attention"],
            ),
        ),
        "phi3": ("Phi3Config", dict(rope, num_key_value_heads=2, pad_token_id=vocab - 1)),
        "gpt_neox": (
            "GPTNeoXConfig",
            dict(rope, rotary_pct=0.25, use_parallel_residual=True, hidden_act="gelu"),
        ),
        "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, n_inner=128, n_positions=256, **common)),
    }


TINY_TYPES = tuple(_configs(0))


def tiny_hf_model(model_type: str, seed: int = 0):
    """Build the seeded tiny model and its tokenizer (no files, no network)."""
    import transformers

    tok = byte_tokenizer()
    table = _configs(len(tok))
    if model_type not in table:
        raise UnsupportedArchitectureError(f"tiny:{model_type}", [f"tiny:{t}" for t in table])
    cls_name, kwargs = table[model_type]
    config = getattr(transformers, cls_name)(**kwargs)
    config._name_or_path = f"tiny:{model_type}"
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model.eval(), tok
