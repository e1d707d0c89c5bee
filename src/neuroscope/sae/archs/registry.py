"""The SAE architectures by name. Adding one: a module with an :class:`Architecture` subclass, and one
line here."""

from __future__ import annotations

from neuroscope.sae.archs.base import Architecture
from neuroscope.sae.archs.batchtopk import BatchTopK
from neuroscope.sae.archs.jumprelu import JumpReLU
from neuroscope.sae.archs.matryoshka import Matryoshka
from neuroscope.sae.archs.relu import ReLU
from neuroscope.sae.archs.topk import TopK
from neuroscope.sae.archs.transcoder import TRANSCODER_ARCHS

REGISTRY: dict[str, Architecture] = {
    a.name: a for a in (ReLU(), TopK(), BatchTopK(), JumpReLU(), Matryoshka(), *TRANSCODER_ARCHS)
}


def get_architecture(name: str) -> Architecture:
    from neuroscope.errors import InvalidConfigError

    if name not in REGISTRY:
        raise InvalidConfigError(
            f"Unknown SAE architecture {name!r}; valid architectures: {', '.join(REGISTRY)}."
        )
    return REGISTRY[name]


def from_saelens(saelens_name: str, ours: str | None = None) -> str:
    """Our architecture for a cfg.json: ``ours`` (the ``neuroscope_architecture`` key we write) when it
    is saved under ``saelens_name``, else the one architecture SAELens spells that way natively."""
    if ours in REGISTRY and REGISTRY[ours].saelens == saelens_name:
        return ours
    native = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
    if saelens_name not in native:
        from neuroscope.errors import InvalidConfigError

        raise InvalidConfigError(
            f"Unknown SAE architecture {saelens_name!r}; valid architectures: "
            f"{', '.join(sorted(native))} (SAELens names)."
        )
    return native[saelens_name]
