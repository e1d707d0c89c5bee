"""NeuroScope: a workbench for mechanistic interpretability of transformer language models."""

from neuroscope.models.cache import ActivationCache
from neuroscope.models.hooked import HookedModel, Tokens
from neuroscope.models.loading import load_model

__all__ = ["ActivationCache", "HookedModel", "Tokens", "load_model", "__version__"]
__version__ = "0.1.0"
