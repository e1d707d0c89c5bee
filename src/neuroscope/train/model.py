"""Build the GPT-2 to train, and save/list checkpoints as folders :func:`neuroscope.load_model` opens."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from neuroscope.errors import ResourceNotFoundError
from neuroscope.train.config import TrainConfig

CHECKPOINT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)$")


def tokenizer() -> Any:
    """The byte-level tokenizer the core's tiny models use (ids 0..255 are bytes, then BOS, EOS, PAD)."""
    from neuroscope.models.tiny import byte_tokenizer

    return byte_tokenizer()


def build_model(cfg: TrainConfig, vocab_size: int, special: dict[str, Any]) -> Any:
    """A freshly initialised ``GPT2LMHeadModel`` (seeded by ``cfg.seed``).

    The attention-only variant keeps GPT-2's module layout (so loaders, adapters and hooks need nothing new) but
    zeroes the MLP weights and biases and freezes them: each MLP then adds exactly zero to the residual stream.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=4 if cfg.attn_only else 4 * cfg.d_model,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=cfg.tie_embeddings,
        **special,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = GPT2LMHeadModel(config)
    if cfg.sinusoidal_init:
        with torch.no_grad():
            wpe = model.transformer.wpe.weight
            wpe.copy_(sinusoids(cfg.n_ctx, cfg.d_model) * wpe.std() * 5)
    if cfg.attn_only:
        blocks: Any = model.transformer.h
        for block in blocks:
            for p in block.mlp.parameters():
                p.data.zero_()
                p.requires_grad_(False)
    return model


def sinusoids(n_pos: int, d_model: int) -> torch.Tensor:
    """``[n_pos, d_model]`` sin/cos position codes with unit-variance entries."""
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
    freq = torch.exp(
        -torch.arange(0, d_model, 2, dtype=torch.float32) * (torch.log(torch.tensor(10000.0)) / d_model)
    )
    out = torch.zeros(n_pos, d_model)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out * 2**0.5


def save_checkpoint(model: Any, tok: Any, folder: Path, meta: dict[str, Any]) -> Path:
    """Write config.json + model.safetensors + tokenizer + neuroscope.json, atomically (temp folder, rename)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "neuroscope.json").write_text(json.dumps(meta, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def checkpoint_path(out: Path, step: int) -> Path:
    return Path(out) / CHECKPOINT_DIR / f"step-{step:06d}"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, folder) for every checkpoint of a run folder, in step order."""
    root = Path(out) / CHECKPOINT_DIR
    if not root.is_dir():
        raise ResourceNotFoundError(
            f"No checkpoints under {root}: train a model first, e.g. `neuroscope train-tiny --out {out}`."
        )
    found = []
    for child in root.iterdir():
        m = _STEP_RE.match(child.name)
        if m and (child / "config.json").is_file():
            found.append((int(m.group(1)), child))
    if not found:
        raise ResourceNotFoundError(f"{root} holds no step-NNNNNN checkpoint folders with a config.json.")
    return sorted(found)
