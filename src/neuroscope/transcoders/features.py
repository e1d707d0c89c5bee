"""Feature stores for transcoder features, by the SAE feature machinery (:mod:`neuroscope.sae.features`):
top contexts and densities read the transcoder's latents on the MLP input of held-out text, logit effects
are each decoder row (what a feature writes into the residual stream through the MLP output) through the
unembedding. Stored beside the weights: ``<folder>/features/L{layer}/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from neuroscope.transcoders.model import HOOK_IN

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.features import FeatureConfig, FeatureStore


def features_dir(folder: str | os.PathLike, layer: int) -> Path:
    return Path(folder) / "features" / f"L{int(layer)}"


def compute_transcoder_features(
    folder: str | os.PathLike,
    layer: int,
    model: HookedModel,
    store: ActivationStore | str | os.PathLike | None = None,
    cfg: FeatureConfig | None = None,
) -> Path:
    """The feature store of layer ``layer``'s transcoder in ``folder``, from ``store`` (default: the
    folder's held-out pairs, ``acts/heldout``)."""
    from neuroscope.sae.features import compute_features
    from neuroscope.transcoders.io import load_transcoders
    from neuroscope.transcoders.train import transcoder_to_sae

    tset = load_transcoders(folder, model)
    sae = transcoder_to_sae(tset[layer])
    src = store if store is not None else Path(folder) / "acts" / "heldout"
    return compute_features(
        sae, src, model, features_dir(folder, layer), cfg, hook=HOOK_IN.format(layer=layer)
    )


def transcoder_features(folder: str | os.PathLike, layer: int) -> FeatureStore | None:
    """The stored features of one layer, or None when they were not computed."""
    from neuroscope.sae.features import META_FILE, FeatureStore

    d = features_dir(folder, layer)
    return FeatureStore(d) if (d / META_FILE).exists() else None
