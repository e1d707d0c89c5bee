"""Sparse autoencoders: train on recorded activations, evaluate, save/load (SAELens format), splice
into a model, and store per-feature statistics. Lightning is imported only when training."""

from __future__ import annotations

from typing import Any

from neuroscope.sae.config import SAEConfig, TrainConfig
from neuroscope.sae.evaluate import EvalResult, evaluate_sae
from neuroscope.sae.features import FeatureConfig, FeatureStore, compute_features
from neuroscope.sae.io import load_sae, save_sae
from neuroscope.sae.model import SAE
from neuroscope.sae.splice import SpliceSAE, with_sae

__all__ = [
    "SAE",
    "EvalResult",
    "FeatureConfig",
    "FeatureStore",
    "SAEConfig",
    "SpliceSAE",
    "TrainConfig",
    "compute_features",
    "evaluate_sae",
    "load_sae",
    "save_sae",
    "train_sae",
    "with_sae",
]


def __getattr__(name: str) -> Any:
    if name == "train_sae":
        from neuroscope.sae.train import train_sae

        return train_sae
    raise AttributeError(name)
