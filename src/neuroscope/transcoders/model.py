"""One transcoder (per layer) and a set of them for one model: the shared, weights-only interface.

Training (:mod:`neuroscope.transcoders.train`), saving/loading, the replacement model and attribution graphs
all read transcoders through :class:`Transcoder` and :class:`TranscoderSet`, so they never branch on how a
transcoder was trained. Layout follows circuit-tracer's ``SingleLayerTranscoder``: ``W_enc [d_in, d_tc]``,
``b_enc [d_tc]``, ``W_dec [d_tc, d_out]``, ``b_dec [d_out]``, optional ``W_skip [d_in, d_out]`` (so
``skip(x) = x @ W_skip``) and, for JumpReLU, ``threshold [d_tc]``. The encoder reads the MLP's input as it
is (no ``b_dec`` subtraction: input and output spaces differ)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neuroscope.errors import InvalidConfigError

ACTIVATIONS = ("topk", "jumprelu", "relu")
HOOK_IN = "blocks.{layer}.ln2.hook_normalized"
HOOK_OUT = "blocks.{layer}.hook_mlp_out"


@dataclass(frozen=True)
class TranscoderConfig:
    d_in: int
    d_tc: int
    layer: int
    activation: str = "topk"
    k: int | None = None  # latents per token (TopK only)
    skip: bool = False  # a linear skip term x @ W_skip beside the sparse path
    model_name: str = ""

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise InvalidConfigError(
                f"Unknown transcoder activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}."
            )
        if self.activation == "topk" and not (self.k and 0 < self.k <= self.d_tc):
            raise InvalidConfigError(f"A TopK transcoder needs 0 < k <= d_tc ({self.d_tc}); got k={self.k}.")
        if self.d_in <= 0 or self.d_tc <= 0 or self.layer < 0:
            raise InvalidConfigError(
                f"Bad transcoder shape: d_in={self.d_in}, d_tc={self.d_tc}, layer={self.layer}."
            )

    @property
    def hook_in(self) -> str:
        return HOOK_IN.format(layer=self.layer)

    @property
    def hook_out(self) -> str:
        return HOOK_OUT.format(layer=self.layer)


class Transcoder(nn.Module):
    threshold: torch.Tensor  # JumpReLU only

    def __init__(self, cfg: TranscoderConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(cfg.d_tc, cfg.d_in, generator=gen)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter((w_dec.t() * 0.1).contiguous())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_tc))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.W_skip: nn.Parameter | None = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_in)) if cfg.skip else None
        if cfg.activation == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(cfg.d_tc))

    @property
    def layer(self) -> int:
        return self.cfg.layer

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.cfg.activation == "relu":
            return F.relu(pre)
        if self.cfg.activation == "jumprelu":
            return F.relu(pre) * (pre > self.threshold).to(pre.dtype)
        assert self.cfg.k is not None
        vals, idx = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, F.relu(vals))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_tc]`` of the MLP input ``x [..., d_in]``."""
        return self.activate(self.pre(x))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return acts @ self.W_dec + self.b_dec

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_skip if self.W_skip is not None else torch.zeros_like(x[..., : self.cfg.d_in])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP output this transcoder predicts from the MLP input."""
        out = self.decode(self.encode(x))
        return out + x @ self.W_skip if self.W_skip is not None else out


@dataclass
class TranscoderSet:
    """Transcoders of one model by layer (a replacement model needs every layer; an attribution graph over
    a subset treats the other MLPs as error nodes)."""

    model_name: str
    transcoders: dict[int, Transcoder]

    @property
    def layers(self) -> list[int]:
        return sorted(self.transcoders)

    def __getitem__(self, layer: int) -> Transcoder:
        return self.transcoders[layer]
