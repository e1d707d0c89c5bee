"""Run a model with an SAE spliced in at its hook, optionally with features ablated or clamped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError
from neuroscope.interventions import Binding, Intervention
from neuroscope.models.hooks import HookPoint
from neuroscope.sae.model import SAE

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

# hooks whose last axis is d_model; others are checked on the first call
_RESID_LIKE = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
    "hook_embed",
)


def _width_error(sae: SAE, name: str, width: int) -> InvalidConfigError:
    return InvalidConfigError(
        f"The SAE has d_in={sae.d_in} but hook {name} has width {width}: use an SAE trained on a "
        f"{width}-wide hook (or the hook this SAE was trained on{', ' + sae.cfg.hook_name if sae.cfg.hook_name else ''})."
    )


@dataclass
class SpliceSAE(Intervention):
    """Replace the activation at ``hook`` (default: the SAE's own hook) with the SAE's reconstruction.

    ``ablate``: latents set to 0; ``clamp``: latents set to a value. With ``keep_error=True`` the SAE's
    reconstruction error is added back, so only the edited latents change the activation (with no edits,
    the model then runs unchanged). ``skip_tokens``: token ids whose positions keep their original
    activation (e.g. BOS, which SAEs are not trained on); needs ``tokens`` of the run, given per call via
    :meth:`for_tokens`."""

    sae: SAE
    hook: str | None = None
    ablate: Sequence[int] = ()
    clamp: Mapping[int, float] = field(default_factory=dict)
    keep_error: bool = False
    positions: Sequence[int] | None = None
    keep_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for f in list(self.ablate) + list(self.clamp):
            if not 0 <= int(f) < self.sae.d_sae:
                raise IndexOutOfRangeError("feature", int(f), self.sae.d_sae)

    def bind(self, model: HookedModel) -> Binding:
        hook = self.hook or self.sae.cfg.hook_name
        if not hook:
            raise InvalidConfigError("SpliceSAE needs hook=: this SAE's config does not name its hook.")
        name = model.resolve_hook_name(hook)
        if name.endswith(_RESID_LIKE) and model.cfg.d_model != self.sae.d_in:
            raise _width_error(self.sae, name, model.cfg.d_model)
        sae = self.sae

        def fn(x: torch.Tensor, hp: HookPoint) -> torch.Tensor:
            if x.shape[-1] != sae.d_in:
                raise _width_error(sae, name, x.shape[-1])
            z = sae.encode(x)
            edited = z
            if self.ablate or self.clamp:
                edited = z.clone()
                if self.ablate:
                    edited[..., list(self.ablate)] = 0.0
                for f, v in self.clamp.items():
                    edited[..., int(f)] = float(v)
            recon = sae.decode(edited)
            if self.keep_error:
                recon = recon + (x.to(recon.dtype) - sae.decode(z))
            recon = recon.to(x.dtype)
            keep = torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)
            if self.positions is not None:
                keep[:] = True
                for p in self.positions:
                    i = (p if p >= 0 else p + x.shape[1] + hp.pos_offset) - hp.pos_offset
                    if 0 <= i < x.shape[1]:
                        keep[:, i] = False
            if self.keep_mask is not None:
                km = self.keep_mask.to(x.device)
                keep = keep | km[:, hp.pos_offset : hp.pos_offset + x.shape[1]]
            return torch.where(keep[..., None], x, recon)

        return [(name, fn)]


def special_mask(tokens: torch.Tensor, special_ids: Sequence[int]) -> torch.Tensor:
    """True where a token is special (BOS/EOS/padding): positions to leave un-spliced."""
    if not special_ids:
        return torch.zeros_like(tokens, dtype=torch.bool)
    return torch.isin(tokens, torch.tensor(list(special_ids), device=tokens.device))


@contextmanager
def with_sae(
    model: HookedModel,
    sae: SAE,
    hook: str | None = None,
    ablate: Sequence[int] = (),
    clamp: Mapping[int, float] | None = None,
    keep_error: bool = False,
) -> Iterator[SpliceSAE]:
    """``with with_sae(model, sae): model(tokens)`` runs with the SAE spliced in; removed on exit."""
    iv = SpliceSAE(sae, hook=hook, ablate=ablate, clamp=dict(clamp or {}), keep_error=keep_error)
    with model.hooks(interventions=[iv]):
        yield iv
