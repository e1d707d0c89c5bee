"""Synthetic data: BOS + a random segment X repeated to the end of the row, previous-token rows, and the BOS + X + X
evaluation batch.

len(X) changes from row to row, so no fixed offset finds the earlier copy: the model has to find "the token after
the last occurrence of this token", which is what an induction head does.
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
    """Rows ``marker, a, r, perm(a), a', r', perm(a'), ...`` (uniform random ``a``, ``r``): the token after each
    ``r`` is ``perm`` of the token one back, and nothing further back says anything about it.

    Breaking the chain every three tokens matters: in an unbroken ``x[t+1] = perm(x[t-1])`` chain the token three
    back predicts too (through ``perm∘perm``), layer 0 grows heads that look 3 back, and layer 1 then builds its
    copying circuit on those, attending one position past the induction target.
    """
    body = torch.randint(0, cfg.vocab, (n, cfg.n_ctx - 1), generator=gen)
    body[:, 2::3] = perm[body[:, 0:-2:3][:, : body[:, 2::3].shape[1]]]
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
        assert marker is not None and perm is not None  # n_skip > 0 only when both are given
        batch[cfg.batch_size - n_skip :] = skip_bigram_rows(n_skip, cfg, marker, perm, gen)
    if text_ids is None or cfg.text_fraction == 0:
        return batch
    n_text = min(round(cfg.text_fraction * cfg.batch_size), cfg.batch_size - n_skip)
    starts = torch.randint(0, len(text_ids) - cfg.n_ctx, (n_text,), generator=gen)
    for row, start in enumerate(starts.tolist()):
        batch[row, 1:] = text_ids[start : start + cfg.n_ctx - 1]
    return batch


def training_batch(cfg: TrainConfig, bos: int, gen: torch.Generator) -> Int[torch.Tensor, "batch n_ctx"]:
    """``batch_size`` rows of BOS + X X X ... (cut at ``n_ctx``), X uniform random tokens, len(X) drawn per row
    from [min_repeat, max_repeat]. Every token after the first copy is predictable, and only in context."""
    lengths = torch.randint(cfg.min_repeat, cfg.max_repeat + 1, (cfg.batch_size,), generator=gen)
    segments = torch.randint(0, cfg.vocab, (cfg.batch_size, cfg.max_repeat), generator=gen)
    # position p of the body holds X[p mod len(X)]
    idx = torch.arange(cfg.n_ctx - 1)[None, :] % lengths[:, None]
    body = segments.gather(1, idx)
    return torch.cat([torch.full((cfg.batch_size, 1), bos, dtype=torch.long), body], dim=1)


def repeated_tokens(
    batch: int, seq_len: int, vocab: int, bos: int, seed: int = 1234
) -> Int[torch.Tensor, "batch pos"]:
    """BOS + X + X with X uniform random of length ``seq_len`` (TransformerLens's head-detector input)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (batch, seq_len), generator=gen)
    return torch.cat([torch.full((batch, 1), bos, dtype=torch.long), x, x], dim=1)
