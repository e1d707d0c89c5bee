"""ActivationCache: the activations of one forward pass, keyed by hook name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import torch
from jaxtyping import Float

from neuroscope.errors import UnknownHookError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

# cache["pattern", 3] shorthand -> full name template
_SHORT = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k",
    "v": "blocks.{}.attn.hook_v",
    "z": "blocks.{}.attn.hook_z",
    "attn_scores": "blocks.{}.attn.hook_attn_scores",
    "scores": "blocks.{}.attn.hook_attn_scores",
    "pattern": "blocks.{}.attn.hook_pattern",
    "pre": "blocks.{}.mlp.hook_pre",
    "pre_linear": "blocks.{}.mlp.hook_pre_linear",
    "post": "blocks.{}.mlp.hook_post",
    "normalized": "ln_final.hook_normalized",
}


def expand_name(key: str | tuple, n_layers: int | None = None) -> str:
    """Turn ``("pattern", 3)`` / ``"pattern3"``-free shorthand into a full hook name."""
    if isinstance(key, tuple):
        short, *rest = key
        template = _SHORT.get(short, short)
        if "{}" in template:
            layer = rest[0] if rest else None
            if layer is None:
                raise KeyError(f"{short!r} needs a layer: cache[{short!r}, layer]")
            if n_layers is not None and layer < 0:
                layer += n_layers
            return template.format(layer)
        return template
    return _SHORT.get(key, key) if "{}" not in _SHORT.get(key, "{}") else key


class ActivationCache:
    def __init__(self, store: dict[str, torch.Tensor], model: HookedModel):
        self._store = store
        self.model = model

    # --- mapping -----------------------------------------------------------------------------------
    def __getitem__(self, key: str | tuple) -> torch.Tensor:
        name = expand_name(key, self.model.cfg.n_layers)
        try:
            return self._store[name]
        except KeyError:
            raise UnknownHookError(name, sorted(self._store)) from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (str, tuple)) and expand_name(key, self.model.cfg.n_layers) in self._store

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def keys(self):
        return self._store.keys()

    def items(self):
        return self._store.items()

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hooks, {self.nbytes / 2**20:.1f} MiB)"

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._store.values())

    def to(self, device: str | torch.device) -> ActivationCache:
        return ActivationCache({k: v.to(device) for k, v in self._store.items()}, self.model)

    # --- residual stream ---------------------------------------------------------------------------
    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: slice | int | None = None,
        return_labels: bool = False,
    ):
        """The residual stream before each layer (and the final one): ``[component, batch, pos, d_model]``."""
        n = self.model.cfg.n_layers if layer is None else layer
        parts, labels = [], []
        for l in range(n):
            parts.append(self[("resid_pre", l)])
            labels.append(f"{l}_pre")
            if incl_mid and f"blocks.{l}.hook_resid_mid" in self._store:
                parts.append(self[("resid_mid", l)])
                labels.append(f"{l}_mid")
        if layer is None or layer == self.model.cfg.n_layers:
            parts.append(self[("resid_post", self.model.cfg.n_layers - 1)])
            labels.append("final_post")
        stack = _slice_pos(torch.stack(parts), pos_slice)
        if apply_ln:
            stack = self.apply_ln_final(stack, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    def decompose_resid(
        self,
        layer: int | None = None,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: slice | int | None = None,
        return_labels: bool = False,
    ):
        """What each component wrote into the residual stream: embeddings, then attn_out/mlp_out per layer.

        The parts sum exactly to ``resid_pre`` of ``layer`` (the final residual when ``layer`` is None).
        """
        n = self.model.cfg.n_layers if layer is None else layer
        parts = [self["hook_embed"]]
        labels = ["embed"]
        if "hook_pos_embed" in self._store:
            parts.append(self["hook_pos_embed"])
            labels.append("pos_embed")
        embed_total = cast(torch.Tensor, sum(parts))
        resid0 = self[("resid_pre", 0)]
        if not torch.allclose(embed_total, resid0, atol=1e-4, rtol=1e-4):
            # e.g. Gemma scales the embedding inside the model: count the difference with the embedding
            parts = [resid0]
            labels = ["embed"]
        for l in range(n):
            if mode in ("all", "attn"):
                parts.append(self[("attn_out", l)])
                labels.append(f"{l}_attn_out")
            if mode in ("all", "mlp"):
                parts.append(self[("mlp_out", l)])
                labels.append(f"{l}_mlp_out")
        stack = _slice_pos(torch.stack(parts), pos_slice)
        if apply_ln:
            stack = self.apply_ln_final(stack, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    def apply_ln_final(
        self, stack: Float[torch.Tensor, "... batch pos d_model"], pos_slice: slice | int | None = None
    ) -> Float[torch.Tensor, "... batch pos d_model"]:
        """Apply the final norm linearly, with its scale frozen from the final residual stream.

        Because the scale is frozen, the normalised components add up to the normalised residual (up to
        LayerNorm's bias, which belongs to no component): what direct logit attribution needs.
        """
        final = _slice_pos(self[("resid_post", self.model.cfg.n_layers - 1)], pos_slice)
        return self.model.norm_linear(stack, final)


def _slice_pos(t: torch.Tensor, pos_slice: slice | int | None) -> torch.Tensor:
    if pos_slice is None:
        return t
    if isinstance(pos_slice, int):
        return t[..., pos_slice : pos_slice + 1 if pos_slice != -1 else None, :]
    return t[..., pos_slice, :]
