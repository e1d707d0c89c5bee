"""Ground-truth recovery metrics for a dictionary of decoder rows against the true feature directions, and
the reconstruction statistics of any SAE that has ``encode``, ``decode`` and ``W_dec`` (ours or SAELens's).

MCC (mean correlation coefficient, as SynthSAEBench and SAELens's ``mean_correlation_coefficient``): the
absolute cosine between every decoder row and every true feature, a one-to-one matching that maximises
their sum (Hungarian algorithm), and the mean over the ``min(d_sae, n_features)`` matched pairs. Signs and
order do not matter; a latent can match at most one feature."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from neuroscope.errors import BenchDependencyError, ShapeMismatchError


class DictionarySAE(Protocol):
    W_dec: torch.Tensor

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


def abs_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|cos|`` between the rows of ``a [m, d]`` and of ``b [n, d]``: ``[m, n]``."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ShapeMismatchError(
            "Decoder rows against true features",
            f"[rows, {a.shape[-1]}] twice",
            (tuple(a.shape), tuple(b.shape)),
        )
    a = a.detach().double()
    b = b.detach().double()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (a @ b.T).abs()


def _linear_sum_assignment(cost: Any) -> tuple[Any, Any]:
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as e:  # scipy comes with the dev extras (and with sae-lens)
        raise BenchDependencyError(
            "MCC needs scipy's Hungarian solver: pip install scipy (or `make setup`)."
        ) from e
    return linear_sum_assignment(cost)


def mcc(decoder: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean |cosine| over the best one-to-one matching of decoder rows to true features (1 = recovered)."""
    sim = abs_cosine(decoder, truth)
    rows, cols = _linear_sum_assignment(-sim.numpy())
    return float(sim[torch.as_tensor(rows), torch.as_tensor(cols)].mean())


def feature_uniqueness(decoder: torch.Tensor, truth: torch.Tensor) -> float:
    """Distinct true features among the latents' nearest (by |cosine|) true features, over ``d_sae``: 1 when
    no two latents track the same feature."""
    if decoder.shape[0] == 0:
        return 0.0
    nearest = abs_cosine(decoder, truth).argmax(dim=1)
    return len(nearest.unique()) / decoder.shape[0]


@dataclass(frozen=True)
class Reconstruction:
    """``fvu``: squared error over the total variance of the inputs (1 - explained variance); ``l0``: mean
    active latents per token; ``dead``: latents that never fire on the evaluation set."""

    fvu: float
    l0: float
    dead: int
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def reconstruction(sae: DictionarySAE, x: torch.Tensor, chunk: int = 8192) -> Reconstruction:
    """FVU, L0 and dead latents of ``sae`` on ``x [n, d_in]``, in chunks (the latents of a chunk only)."""
    mean = x.double().mean(0)
    err = var = l0 = 0.0
    fired: torch.Tensor | None = None
    for i in range(0, x.shape[0], chunk):
        xb = x[i : i + chunk]
        z = sae.encode(xb)
        x_hat = sae.decode(z)
        err += float((xb.double() - x_hat.double()).pow(2).sum())
        var += float((xb.double() - mean).pow(2).sum())
        active = z != 0
        l0 += float(active.sum())
        f = active.any(0)
        fired = f if fired is None else fired | f
    n = x.shape[0]
    dead = int((~fired).sum()) if fired is not None else 0
    return Reconstruction(fvu=err / max(var, 1e-12), l0=l0 / max(n, 1), dead=dead, tokens=n)
