"""Small shared pieces of the analyses: token ids, metrics, statistics, row-wise batched interventions."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float, Int

from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel, Tokens


def token_id(model: HookedModel, token: str | int) -> int:
    """One vocabulary id for ``token``; a string must encode to exactly one token (e.g. ``" Mary"``)."""
    if isinstance(token, (int, np.integer)):
        if not 0 <= int(token) < model.cfg.d_vocab:
            raise InvalidConfigError(
                f"token id {token} is outside the vocabulary (0..{model.cfg.d_vocab - 1})"
            )
        return int(token)
    ids = model.tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise InvalidConfigError(
            f"{token!r} is {len(ids)} tokens {pieces} for this tokenizer; give a single-token string or an id"
        )
    return int(ids[0])


def first_token_id(model: HookedModel, token: str | int) -> int:
    """Like ``token_id`` but takes the first token of a multi-token word (for word lists)."""
    if isinstance(token, (int, np.integer)):
        return token_id(model, token)
    ids = model.tokenizer.encode(token, add_special_tokens=False)
    if not ids:
        raise InvalidConfigError(f"{token!r} encodes to no tokens")
    return int(ids[0])


def last_logits(
    logits: Float[torch.Tensor, "batch pos vocab"], tokens: Tokens
) -> Float[torch.Tensor, "batch vocab"]:
    """The logits at each row's last real token (right padding)."""
    last = tokens.last_positions.to(logits.device)
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


def logit_diff(
    logits: Float[torch.Tensor, "batch pos vocab"],
    tokens: Tokens,
    answer: Int[torch.Tensor, " batch"],
    wrong: Int[torch.Tensor, " batch"] | None,
) -> Float[torch.Tensor, " batch"]:
    last = last_logits(logits, tokens).float()
    rows = torch.arange(last.shape[0], device=last.device)
    out = last[rows, answer.to(last.device)]
    if wrong is not None:
        out = out - last[rows, wrong.to(last.device)]
    return out


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    a = (1 - level) / 2
    return (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def head_mask_hooks(
    model: HookedModel, keep: Float[torch.Tensor, "rows layer head"]
) -> list[tuple[str, Callable]]:
    """Hooks that multiply each row's head outputs (``hook_z``) by ``keep[row, layer, head]``.

    Many ablation configurations then run as rows of one batched forward instead of one forward each.
    """
    hooks = []
    for layer in range(model.cfg.n_layers):
        m = keep[:, layer]
        if bool((m == 1).all()):
            continue

        def fn(z: torch.Tensor, hook: Any, _m: torch.Tensor = m) -> torch.Tensor:
            return z * _m.to(z.device, z.dtype)[:, None, :, None]

        hooks.append((f"blocks.{layer}.attn.hook_z", fn))
    return hooks


def pearson(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def load_data(name: str) -> Any:
    """A prompt set shipped in ``neuroscope/data`` (``name`` without ``.json``), or a path to a JSON file."""
    if name.endswith(".json"):
        with open(name, encoding="utf-8") as f:
            return json.load(f)
    text = resources.files("neuroscope.data").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def tolist(x: Any) -> Any:
    """Tensors and arrays to nested lists of Python floats (JSON-ready)."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().tolist() if x.is_floating_point() else x.detach().cpu().tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x
