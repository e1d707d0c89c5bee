"""How an attached edit compares with the hooked intervention it stands for, and how much it moves the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.edits.host import EditHost
from neuroscope.interventions import Intervention

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


def kl_per_token(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(ref ‖ other)`` per position, in nats, from logits ``[..., vocab]``."""
    ref = torch.log_softmax(ref_logits.float(), -1)
    other = torch.log_softmax(logits.float(), -1)
    return (ref.exp() * (ref - other)).sum(-1)


@dataclass(frozen=True)
class EditMeasurement:
    n_prompts: int
    n_tokens: int
    max_abs_logit_diff_vs_hooked: float  # the LoRA against the hooked intervention
    # the hooked intervention against itself with its parts applied in reverse order: float32's own noise
    # on these tokens (massive-activation tokens make it ~1e-3 on smollm2-135m)
    hooked_noise_floor: float
    mean_kl_hooked_to_edit: float
    max_abs_logit_change: float  # the LoRA against the unedited model: how much the edit does
    mean_kl_base_to_edit: float
    mean_kl_base_to_hooked: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def measure_edit(
    model: HookedModel,
    edit_name: str,
    reference: Sequence[Intervention],
    tokens: torch.Tensor,
    batch_size: int = 16,
) -> EditMeasurement:
    """Logits of the attached edit ``edit_name``, of the hooked ``reference`` and of the plain model on
    ``tokens [n, pos]`` (unpadded rows of equal length)."""
    host = EditHost.of(model)
    diff = change = floor = 0.0
    kl_ref = kl_base = kl_hook = 0.0
    n_tok = 0
    for i in range(0, tokens.shape[0], batch_size):
        t = tokens[i : i + batch_size].to(model.device)
        base = model(t).float()
        hooked = model(t, interventions=list(reference)).float()
        if len(reference) > 1:
            again = model(t, interventions=list(reversed(reference))).float()
            floor = max(floor, float((again - hooked).abs().max()))
        with host.use([edit_name]):
            edited = model(t).float()
        diff = max(diff, float((edited - hooked).abs().max()))
        change = max(change, float((edited - base).abs().max()))
        kl_ref += float(kl_per_token(hooked, edited).sum())
        kl_base += float(kl_per_token(base, edited).sum())
        kl_hook += float(kl_per_token(base, hooked).sum())
        n_tok += t.numel()
    return EditMeasurement(
        n_prompts=int(tokens.shape[0]),
        n_tokens=n_tok,
        max_abs_logit_diff_vs_hooked=diff,
        hooked_noise_floor=floor,
        mean_kl_hooked_to_edit=kl_ref / n_tok,
        max_abs_logit_change=change,
        mean_kl_base_to_edit=kl_base / n_tok,
        mean_kl_base_to_hooked=kl_hook / n_tok,
    )
