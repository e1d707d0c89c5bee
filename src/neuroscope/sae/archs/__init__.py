"""SAE architectures: one module each, and a registry by name (:mod:`.registry`)."""

from neuroscope.sae.archs.base import Architecture, StepOut
from neuroscope.sae.archs.registry import REGISTRY, from_saelens, get_architecture

__all__ = ["REGISTRY", "Architecture", "StepOut", "from_saelens", "get_architecture"]
