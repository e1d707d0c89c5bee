"""One run, decomposed: each residual-stream index in reach split into SAE features, the SAE's error and its
decoder bias (or, at index 0, the token embeddings themselves), plus what the blocks between them computed.

Stream index ``j``: 0 is the input to block 0 (token embeddings, with positional embeddings where the model
adds them); ``j >= 1`` is the output of block ``j - 1``. A resid_post SAE at layer ``l`` sits at ``l + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from neuroscope.graphs.linear import capture_scales
from neuroscope.models.attention import AttentionInputs, record_attention

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE
    from neuroscope.sae.suite import SAESuite


@dataclass
class Stream:
    """The residual at one stream index, ``x [pos, d_model]``, with its SAE decomposition
    ``x = Σ vals[s, m] · W_dec[idx[s, m]] + b_dec + err[s]`` (tokens: no SAE, ``x`` is exact)."""

    index: int
    x: torch.Tensor
    layer: int | None = None  # the suite layer of the SAE here (None at the token stream)
    sae: SAE | None = None
    W_enc: torch.Tensor | None = None  # [d_model, d_sae], the model's dtype
    W_dec: torch.Tensor | None = None  # [d_sae, d_model]
    b_enc: torch.Tensor | None = None
    b_dec: torch.Tensor | None = None
    vals: torch.Tensor | None = None  # [pos, m] activations of the active latents (0 = padding)
    idx: torch.Tensor | None = None  # [pos, m]
    err: torch.Tensor | None = None  # [pos, d_model]

    @property
    def is_tokens(self) -> bool:
        return self.sae is None

    def pre_act(self, s: int, f: int) -> float:
        """Latent ``f``'s pre-activation at position ``s`` (its input, what a provenance graph splits)."""
        assert self.W_enc is not None and self.b_dec is not None and self.b_enc is not None
        return float((self.x[s] - self.b_dec) @ self.W_enc[:, f] + self.b_enc[f])

    def parent_weights(
        self, S: torch.Tensor, G: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """For rows reading this stream at positions ``S [n]`` along directions ``G [n, d_model]`` (the
        gradient of each row's value with respect to the residual there): per row the edge weight of each
        active latent ``[n, m]``, of the error (or of the token, at the token stream) ``[n]``, and of the
        decoder bias ``[n]``. Weight = the parent's vector · the direction (gradient × input)."""
        if self.sae is None:
            return None, (self.x[S] * G).sum(-1), torch.zeros(S.shape[0], dtype=G.dtype)
        assert self.vals is not None and self.idx is not None and self.err is not None
        assert self.W_dec is not None and self.b_dec is not None
        idx = self.idx[S]  # [n, m]
        # gather the active decoder rows per row: [n, m, d] (linear in rows, never [pos, d_sae, d])
        proj = torch.einsum("nmd,nd->nm", self.W_dec[idx], G)
        return self.vals[S] * proj, (self.err[S] * G).sum(-1), G @ self.b_dec


def _active(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, ids) of each position's active latents, padded to the largest count with zeros."""
    m = max(1, int((z > 0).sum(-1).max()))
    vals, idx = z.topk(m, dim=-1)
    return vals, idx


def build_stream(index: int, x: torch.Tensor, suite: SAESuite | None, dtype: torch.dtype) -> Stream:
    if index == 0 or suite is None:
        return Stream(index, x)
    layer = suite.layer_at(index)
    assert layer is not None
    sae = suite.sae(layer)
    W_enc = sae.W_enc.detach().to(dtype)
    W_dec = sae.W_dec.detach().to(dtype)
    b_enc = sae.b_enc.detach().to(dtype)
    b_dec = sae.b_dec.detach().to(dtype)
    with torch.no_grad():
        z = sae.encode(x.float()).to(dtype)  # the SAE's own rule (TopK or ReLU) decides what is active
    vals, idx = _active(z)
    del z  # [pos, d_sae]: only the active latents are kept
    # a gather-and-sum of the active rows: never materialises [pos, m, d_model]
    recon = torch.nn.functional.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum") + b_dec
    return Stream(index, x, layer, sae, W_enc, W_dec, b_enc, b_dec, vals, idx, x - recon)


@dataclass
class Run:
    """The clean forward a provenance graph is built on: every residual index in reach, and for every block
    between them its values, MLP and attention outputs and norm scales.

    Attention patterns are not kept: ``[head, pos, pos]`` per block would make memory quadratic in the
    prompt. The run keeps what each block's attention saw (queries and keys after RoPE, the mask as key
    intervals: linear in the prompt), and a graph computes the rows of the positions that become its nodes
    from them (:meth:`pattern_rows`), exactly as the eager kernel would, while the forward ran on SDPA.
    """

    model: HookedModel
    tokens: torch.Tensor  # [pos]
    streams: dict[int, Stream]
    acts: dict[str, torch.Tensor]  # hook name -> activation without the batch axis
    scales: dict[tuple[int, str], torch.Tensor]  # (block, norm role) -> [pos, 1]
    attn: dict[int, AttentionInputs] = field(default_factory=dict)  # block -> what its attention saw

    def pattern_rows(self, b: int, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Block ``b``'s attention pattern at the query ``positions``: ``[head, len(positions), key]``."""
        return self.attn[b].rows(positions)[0]

    def pattern(self, b: int) -> torch.Tensor:
        """Block ``b``'s whole pattern ``[head, q, k]`` (for checks on short prompts)."""
        return self.pattern_rows(b, range(self.tokens.shape[0]))

    def kept_bytes(self) -> dict[str, int]:
        """Bytes of what the run keeps, by kind (the attention inputs grow with the prompt, not its square)."""
        acts = sum(t.numel() * t.element_size() for t in self.acts.values())
        return {"acts": acts, "attention": sum(a.nbytes() for a in self.attn.values())}


def block_hooks(model: HookedModel, b: int) -> list[str]:
    names = [
        f"blocks.{b}.hook_resid_pre",
        f"blocks.{b}.hook_resid_post",
        f"blocks.{b}.attn.hook_v",
        f"blocks.{b}.attn.hook_z",
        f"blocks.{b}.hook_attn_out",
        f"blocks.{b}.hook_mlp_out",
    ]
    if not model.cfg.parallel_attn_mlp:
        names.append(f"blocks.{b}.hook_resid_mid")
    return names


@torch.no_grad()
def clean_run(model: HookedModel, tokens: torch.Tensor, lo: int, hi: int, suite: SAESuite | None) -> Run:
    """One forward up to stream index ``hi``; decomposes indices ``lo..hi`` and records blocks ``lo..hi-1``."""
    blocks = list(range(lo, hi))
    names = sorted({n for b in blocks for n in block_hooks(model, b)})
    with capture_scales(model, blocks) as scales, record_attention(blocks) as attn:
        _, cache = model.run_with_cache(tokens[None], names=names, stop_at_layer=hi)
    acts = {n: cache[n][0] for n in names}
    streams = {}
    for j in range(lo, hi + 1):
        x = acts[f"blocks.{j}.hook_resid_pre"] if j < hi else acts[f"blocks.{j - 1}.hook_resid_post"]
        streams[j] = build_stream(j, x, suite, model.dtype)
    return Run(model, tokens, streams, acts, {k: v[0] for k, v in scales.items()}, dict(attn))
