"""The adapter tables. Module paths are Hugging Face's (transformers 5.x)."""

from __future__ import annotations

from neuroscope.models.adapters import Adapter, Site, _llama_like

LLAMA = _llama_like("llama", "mistral", "qwen2", "qwen3")

GEMMA = _llama_like("gemma", norm="rms_plus_one")

# Gemma 2/3 norm the sublayer outputs before they join the residual stream, so hook_attn_out and
# hook_mlp_out are the post-norm outputs: exactly what is added to the residual.
GEMMA2 = Adapter(
    model_types=("gemma2", "gemma3_text"),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    ln1="input_layernorm",
    norm="rms_plus_one",
    sites={
        **{
            k: v
            for k, v in GEMMA.sites.items()
            if k not in ("hook_attn_out", "hook_mlp_out", "ln2.hook_normalized")
        },
        "hook_attn_out": Site("post_attention_layernorm"),
        "ln2.hook_normalized": Site("pre_feedforward_layernorm"),
        "hook_mlp_out": Site("post_feedforward_layernorm"),
    },
)

PHI3 = Adapter(
    model_types=("phi3",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    ln1="input_layernorm",
    sites={
        "ln1.hook_normalized": Site("input_layernorm"),
        "attn.hook_q": Site("self_attn.qkv_proj", chunks=("q", "kv", "kv"), part=0, heads="q"),
        "attn.hook_k": Site("self_attn.qkv_proj", chunks=("q", "kv", "kv"), part=1, heads="kv"),
        "attn.hook_v": Site("self_attn.qkv_proj", chunks=("q", "kv", "kv"), part=2, heads="kv"),
        "attn.hook_z": Site("self_attn.o_proj", io="in", heads="q"),
        "hook_attn_out": Site("self_attn"),
        "ln2.hook_normalized": Site("post_attention_layernorm"),
        "mlp.hook_pre": Site("mlp.gate_up_proj", chunks=("mlp", "mlp"), part=0),
        "mlp.hook_pre_linear": Site("mlp.gate_up_proj", chunks=("mlp", "mlp"), part=1),
        "mlp.hook_post": Site("mlp.down_proj", io="in"),
        "hook_mlp_out": Site("mlp"),
    },
)

GPT2 = Adapter(
    model_types=("gpt2",),
    layers="transformer.h",
    embed="transformer.wte",
    pos_embed="transformer.wpe",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    ln1="ln_1",
    norm="layer",
    sites={
        "ln1.hook_normalized": Site("ln_1"),
        "attn.hook_q": Site("attn.c_attn", chunks=("q", "q", "q"), part=0, heads="q"),
        "attn.hook_k": Site("attn.c_attn", chunks=("q", "q", "q"), part=1, heads="q"),
        "attn.hook_v": Site("attn.c_attn", chunks=("q", "q", "q"), part=2, heads="q"),
        "attn.hook_z": Site("attn.c_proj", io="in", heads="q"),
        "hook_attn_out": Site("attn"),
        "ln2.hook_normalized": Site("ln_2"),
        "mlp.hook_pre": Site("mlp.c_fc"),
        "mlp.hook_post": Site("mlp.c_proj", io="in"),
        "hook_mlp_out": Site("mlp"),
    },
)

GPT_NEOX = Adapter(
    model_types=("gpt_neox",),
    layers="gpt_neox.layers",
    embed="gpt_neox.embed_in",
    final_norm="gpt_neox.final_layer_norm",
    unembed="lm_head",
    ln1="input_layernorm",
    norm="layer",
    parallel=lambda config: bool(getattr(config, "use_parallel_residual", True)),
    sites={
        "ln1.hook_normalized": Site("input_layernorm"),
        **{
            f"attn.hook_{n}": Site(
                "attention.query_key_value", chunks=("q", "q", "q"), part=i, heads="q", interleaved=True
            )
            for i, n in enumerate("qkv")
        },
        "attn.hook_z": Site("attention.dense", io="in", heads="q"),
        "hook_attn_out": Site("attention"),
        "ln2.hook_normalized": Site("post_attention_layernorm"),
        "mlp.hook_pre": Site("mlp.dense_h_to_4h"),
        "mlp.hook_post": Site("mlp.dense_4h_to_h", io="in"),
        "hook_mlp_out": Site("mlp"),
    },
)

ADAPTERS: list[Adapter] = [LLAMA, GEMMA, GEMMA2, PHI3, GPT2, GPT_NEOX]
