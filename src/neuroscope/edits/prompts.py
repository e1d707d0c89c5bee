"""Triggered and clean prompt sets as distillation data: each text (prompt, or prompt + response) tokenised on
its own, right-padded to one length with a mask, and split into train and held-out parts by a seeded
permutation. Keys follow :func:`neuroscope.edits.distill.split_contexts`: ``fire`` = triggered (where the
edit must act), ``quiet`` = clean (where the model must stay as it was)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from neuroscope.errors import EmptyPromptSetError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


def encode(model: HookedModel, texts: Sequence[str], max_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``ids [n, T]`` right-padded, and ``mask [n, T]`` (1 = real token); texts longer than ``max_len``
    keep their first ``max_len`` tokens."""
    tok = model.tokenizer
    rows = [list(tok(t)["input_ids"])[:max_len] for t in texts]
    if not rows or any(not r for r in rows):
        raise EmptyPromptSetError("every text to distil on needs at least one token")
    T = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    ids = torch.full((len(rows), T), int(pad), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def read_sets(triggered: str | os.PathLike, clean: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Both prompt files, each required: a missing or empty one is named."""
    from neuroscope.organisms.data import read_prompts

    out = []
    for kind, path in (("triggered", triggered), ("clean", clean)):
        try:
            out.append(read_prompts(Path(path)))
        except EmptyPromptSetError as e:
            raise EmptyPromptSetError(f"no {kind} prompts: {e}") from None
    return out[0], out[1]


def prompt_data(
    model: HookedModel,
    triggered: Sequence[str],
    clean: Sequence[str],
    heldout_fraction: float = 0.25,
    seed: int = 0,
    max_len: int = 64,
) -> dict[str, torch.Tensor]:
    """``{fire,quiet}_{train,heldout}`` ids and their ``_mask``s from the two prompt sets."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, texts in (("triggered", triggered), ("clean", clean)):
        if len(texts) < 2:
            raise EmptyPromptSetError(
                f"need at least 2 {name} prompts (one to train on, one held out), got {len(texts)}"
            )
    # one length for both kinds: a training batch holds rows of each
    all_ids, all_mask = encode(model, [*triggered, *clean], max_len)
    n_fire = len(triggered)
    for kind, sl in (("fire", slice(0, n_fire)), ("quiet", slice(n_fire, None))):
        ids, mask = all_ids[sl], all_mask[sl]
        perm = torch.randperm(ids.shape[0], generator=gen)
        n_held = min(ids.shape[0] - 1, max(1, int(round(ids.shape[0] * heldout_fraction))))
        for part, idx in (("heldout", perm[:n_held]), ("train", perm[n_held:])):
            out[f"{kind}_{part}"] = ids[idx]
            out[f"{kind}_{part}_mask"] = mask[idx]
    return out
