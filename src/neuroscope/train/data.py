"""Synthetic data: random token sequences with a repeated segment, and the BOS + X + X evaluation batch.

Training copies have random lengths, places and gaps, so a model cannot predict a repeat from position alone and
has to find "the token after the last occurrence of this token", which is what an induction head does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int

from neuroscope.errors import ResourceNotFoundError
from neuroscope.train.config import TrainConfig


def _byte_chars() -> list[str]:
    """GPT-2's byte → printable character table (what ``tokenizers``' ByteLevel uses), indexed by byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def load_text_ids(path: str | Path, tokenizer: Any) -> Int[torch.Tensor, " n"]:
    """The whole text file as byte-token ids (documents joined by blank lines)."""
    path = Path(path)
    if not path.is_file():
        raise ResourceNotFoundError(
            f"Text file {path} does not exist (give a .jsonl of {{'text': ...}} rows or a .txt)."
        )
    if path.suffix == ".jsonl":
        docs = [
            json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        text = "\n\n".join(docs)
    else:
        text = path.read_text(encoding="utf-8")
    # the byte tokenizer's id for byte b is the id of GPT-2's printable stand-in character for b
    table = torch.tensor([tokenizer.convert_tokens_to_ids(ch) for ch in _byte_chars()])
    raw = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()
    return table[raw]


def skip_permutation(cfg: TrainConfig) -> Int[torch.Tensor, " vocab"]:
    """The fixed permutation of the skip-bigram rows (seeded by the run's seed)."""
    return torch.randperm(cfg.vocab, generator=torch.Generator().manual_seed(cfg.seed + 1))


def skip_bigram_rows(
    n: int, cfg: TrainConfig, marker: int, perm: torch.Tensor, gen: torch.Generator
) -> Int[torch.Tensor, "n n_ctx"]:
    """Rows ``marker, a, b, perm(a), perm(b), perm(perm(a)), ...``: each token is ``perm`` of the one two back."""
    body = torch.empty(n, cfg.n_ctx - 1, dtype=torch.long)
    body[:, :2] = torch.randint(0, cfg.vocab, (n, 2), generator=gen)
    for t in range(2, cfg.n_ctx - 1):
        body[:, t] = perm[body[:, t - 2]]
    return torch.cat([torch.full((n, 1), marker, dtype=torch.long), body], dim=1)


def mixed_batch(
    cfg: TrainConfig,
    bos: int,
    gen: torch.Generator,
    text_ids: torch.Tensor | None = None,
    marker: int | None = None,
    perm: torch.Tensor | None = None,
) -> Int[torch.Tensor, "batch n_ctx"]:
    """:func:`training_batch`, the last ``skip_fraction`` of rows replaced by skip-bigram rows (given ``marker``
    and ``perm``) and the first ``text_fraction`` by random windows of ``text_ids``."""
    batch = training_batch(cfg, bos, gen)
    n_skip = round(cfg.skip_fraction * cfg.batch_size) if marker is not None and perm is not None else 0
    if n_skip:
        batch[cfg.batch_size - n_skip :] = skip_bigram_rows(n_skip, cfg, marker, perm, gen)
    if text_ids is None or cfg.text_fraction == 0:
        return batch
    n_text = min(round(cfg.text_fraction * cfg.batch_size), cfg.batch_size - n_skip)
    starts = torch.randint(0, len(text_ids) - cfg.n_ctx, (n_text,), generator=gen)
    for row, start in enumerate(starts.tolist()):
        batch[row, 1:] = text_ids[start : start + cfg.n_ctx - 1]
    return batch


def training_batch(cfg: TrainConfig, bos: int, gen: torch.Generator) -> Int[torch.Tensor, "batch n_ctx"]:
    """``batch_size`` rows of BOS + random tokens in which segments of random length are copied a random gap later.

    Each row starts with a random-length prefix, then repeats ``X [gap] X`` until it is full. About 40 % of the
    tokens are predictable, and only by content: the copy distance and the place of the copies change every
    time, so neither position alone nor "half-way back" finds the source (an earlier version with back-to-back
    blocks starting at BOS taught the model exactly that shortcut).
    """
    body = cfg.n_ctx - 1
    toks = torch.randint(0, cfg.vocab, (cfg.batch_size, body), generator=gen)

    def draw(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))

    for row in range(cfg.batch_size):
        pos = draw(0, body // 4)
        while body - pos >= 2 * cfg.min_repeat:
            length = draw(cfg.min_repeat, (body - pos) // 2)
            gap = draw(0, min(length, body - pos - 2 * length))
            dst = pos + length + gap
            toks[row, dst : dst + length] = toks[row, pos : pos + length]
            pos = dst + length
    return torch.cat([torch.full((cfg.batch_size, 1), bos, dtype=torch.long), toks], dim=1)


def repeated_tokens(
    batch: int, seq_len: int, vocab: int, bos: int, seed: int = 1234
) -> Int[torch.Tensor, "batch pos"]:
    """BOS + X + X with X uniform random of length ``seq_len`` (TransformerLens's head-detector input)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (batch, seq_len), generator=gen)
    return torch.cat([torch.full((batch, 1), bos, dtype=torch.long), x, x], dim=1)
