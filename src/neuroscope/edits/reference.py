"""Hooked references the edits are measured against: the exact interventions a LoRA edit stands in for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.interventions import Binding, Intervention
from neuroscope.models.hooks import HookPoint

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

# Position 0 of every sequence is the attention-sink token of these models (residual norms ~100x a typical
# token's); SAEs are trained without it, so its latents are meaningless and it is never edited.
FIRST_EDITABLE_POS = 1


@dataclass
class ClampFeature(Intervention):
    """Where a feature fires (latent > 0), set it to ``value`` or multiply it by ``scale``; elsewhere leave
    the stream alone. Only the edited latents change the activation: ``x += Σ_f (new_f − z_f) · W_dec[f]``
    (the SAE's reconstruction error is kept), so with no feature firing the model runs unchanged."""

    sae: SAE
    features: Sequence[int]
    value: float | None = None
    scale: float | None = None
    hook: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.scale is None):
            raise InvalidConfigError("ClampFeature needs exactly one of value= or scale=")

    def bind(self, model: HookedModel) -> Binding:
        name = model.resolve_hook_name(self.hook or self.sae.cfg.hook_name)
        feats = [int(f) for f in self.features]
        sae = self.sae

        def fn(x: torch.Tensor, hp: HookPoint) -> torch.Tensor:
            z = sae.encode(x)[..., feats]  # [b, p, k]
            new = torch.full_like(z, float(self.value)) if self.value is not None else z * float(self.scale)  # type: ignore[arg-type]
            delta = torch.where(z > 0, new - z, torch.zeros_like(z))
            first = max(0, FIRST_EDITABLE_POS - hp.pos_offset)
            delta[:, :first] = 0
            return x + (delta @ sae.W_dec[feats].to(delta.dtype)).to(x.dtype)

        return [(name, fn)]


def feature_acts(
    model: HookedModel, sae: SAE, tokens: torch.Tensor, features: Sequence[int], hook: str | None = None
) -> torch.Tensor:
    """``[batch, pos, k]`` activations of ``features`` on ``tokens`` (position 0 zeroed, see above)."""
    name = model.resolve_hook_name(hook or sae.cfg.hook_name)
    layer = int(name.split(".")[1])
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names=[name], stop_at_layer=layer + 1)
        z = sae.encode(cache[name].float())[..., [int(f) for f in features]]
    z[:, :FIRST_EDITABLE_POS] = 0
    return z
