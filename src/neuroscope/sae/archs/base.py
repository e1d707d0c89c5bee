"""What an SAE architecture is to the rest of NeuroScope: one :class:`Architecture` object per name.

An architecture decides (1) which extra tensors the SAE holds beside ``W_enc, W_dec, b_enc, b_dec``,
(2) the inference rule that turns pre-activations into latents, (3) the training loss of one batch, and
(4) how it is written to and read from SAELens's ``cfg.json``. The SAE module, the trainer and the
SAELens folder code ask the architecture and never branch on its name, so a new architecture (a
transcoder, whose output hook differs from its input hook and which may add a linear skip term) is one
more file and one more registry entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.model import SAE


@dataclass
class StepOut:
    """One training batch's loss and what the trainer's AuxK, dead-latent tracking and log need.

    ``pre``: pre-activations for AuxK (with their graph, or detached when ``xc = x - b_dec`` is given so
    AuxK recomputes its few selected ones with a sparse backward); ``fired``: ``[d_sae]`` bool."""

    loss: torch.Tensor
    fvu: torch.Tensor
    err: torch.Tensor
    pre: torch.Tensor
    xc: torch.Tensor | None
    fired: torch.Tensor
    active: torch.Tensor
    metrics: dict[str, float] | None = None


class Architecture:
    """Base class; subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    # the ``architecture`` SAELens's ``SAE.load_from_disk`` must see to build the same inference SAE
    saelens: ClassVar[str]
    # SAEConfig fields this architecture uses, written to cfg.json and read back
    cfg_keys: ClassVar[tuple[str, ...]] = ()
    # extra saved tensors, each [d_sae], beside W_enc, W_dec, b_enc, b_dec
    tensors: ClassVar[tuple[str, ...]] = ()
    # whether ``k`` (latents per token) is a parameter of this architecture
    uses_k: ClassVar[bool] = False
    # "sae" (reconstructs its input) or "transcoder" (predicts another hook from its input)
    kind: ClassVar[str] = "sae"

    def normalize(self, cfg: SAEConfig) -> dict[str, Any]:
        """Field values to replace before validation (e.g. completing a list the user gave)."""
        return {}

    def validate(self, cfg: SAEConfig) -> None:
        """Raise a named :class:`InvalidConfigError` for parameters this architecture cannot use."""

    def batch_width(self, cfg: SAEConfig) -> int:
        """Width of one training row (a transcoder trains on ``[input, target]`` rows)."""
        return cfg.d_in

    def target(self, cfg: SAEConfig, batch: torch.Tensor) -> torch.Tensor:
        """The part of a training batch the SAE reconstructs: its variance scales the FVU, and ``b_dec``
        starts at its geometric median."""
        return batch

    def centre(self, sae: SAE, x: torch.Tensor) -> torch.Tensor:
        """What the encoder reads: ``x - b_dec`` for an SAE (input and output share a space)."""
        return x - sae.b_dec

    def init_extra(self, sae: SAE) -> None:
        """Register the extra tensors (``tensors``) on a freshly built SAE."""

    def init_from_sample(self, sae: SAE, sample: torch.Tensor) -> None:
        """Data-dependent initialisation beyond ``b_dec`` from a (scaled) sample of training rows."""

    def activate(self, sae: SAE, pre: torch.Tensor) -> torch.Tensor:
        """The inference rule: latents from pre-activations ``(x - b_dec) @ W_enc + b_enc``."""
        return F.relu(pre)

    def forward(self, sae: SAE, x: torch.Tensor) -> torch.Tensor:
        return sae.decode(sae.encode(x)).to(x.dtype)

    def train_step(
        self, sae: SAE, x: torch.Tensor, total_var: torch.Tensor, n_tokens: int, step: int
    ) -> StepOut:
        raise NotImplementedError

    def after_step(self, sae: SAE) -> None:
        """Constraints to restore after each optimiser step (beyond unit-norm decoder rows)."""

    def fold_input_scale(self, sae: SAE, scale: float) -> None:
        """Trained on ``scale * x``: rescale the extra tensors so the SAE takes raw ``x``. Pre-activations
        shrink by ``1/scale`` once the biases are divided by it, so thresholds on them must too."""
        with torch.no_grad():
            for name in self.tensors:
                getattr(sae, name).data /= scale

    def default_lr(self, cfg: SAEConfig) -> float:
        return 4e-4

    def saelens_cfg(self, cfg: SAEConfig) -> dict[str, Any]:
        """Extra cfg.json keys SAELens reads for this architecture (SAELens ignores unknown keys)."""
        return {}

    def load_tensors(self, state: dict[str, torch.Tensor], d_sae: int) -> dict[str, torch.Tensor]:
        """Extra tensors from a saved state, in the layout :meth:`init_extra` registers (SAELens's older
        spellings converted here)."""
        return {n: state[n] for n in self.tensors}


def topk_lr(cfg: SAEConfig) -> float:
    """The OpenAI scaling-laws rule for TopK-like SAEs: 2e-4 / sqrt(d_sae / 2**14)."""
    return 2e-4 / (cfg.d_sae / 2**14) ** 0.5


def jump(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """SAELens's JumpReLU inference rule: ``relu(pre)`` where ``pre > threshold``, else 0."""
    return F.relu(pre) * (pre > threshold).to(pre.dtype)


def fvu_of(err: torch.Tensor, total_var: torch.Tensor) -> torch.Tensor:
    return err.pow(2).sum() / total_var
