"""Edits: rank-r LoRA patches that remove (``ablate``, closed form) or clamp (distilled) SAE features,
attached to a live model with peft and chosen per request (``EditHost``), saved as plain PEFT adapters.
The edit families (several features across layers, gated edits, head edits; ``families``) are hooked
interventions first, then a closed-form or distilled LoRA checked in plain transformers + peft."""

from __future__ import annotations

from neuroscope.edits.build import METHODS, build_edit, corpus_contexts, reference_for
from neuroscope.edits.closed_form import ablation_edit, ablation_reference, orthonormal_directions
from neuroscope.edits.distill import DistillConfig, DistillReport, distill_edit, split_contexts
from neuroscope.edits.edit import MAX_RANK, MIN_RANK, LoraEdit, load_edit
from neuroscope.edits.families import (
    HookedEdit,
    export_edit,
    gated_edit,
    head_edit,
    multi_feature_ablate,
    multi_feature_clamp,
    realise,
)
from neuroscope.edits.fingerprint import model_sha256, sae_sha256
from neuroscope.edits.gated import GatedEdit, clean_threshold, mean_difference
from neuroscope.edits.host import BASE, EditHost
from neuroscope.edits.measure import EditMeasurement, measure_edit
from neuroscope.edits.reference import ClampFeature

__all__ = [
    "BASE",
    "MAX_RANK",
    "METHODS",
    "MIN_RANK",
    "ClampFeature",
    "GatedEdit",
    "HookedEdit",
    "DistillConfig",
    "DistillReport",
    "EditHost",
    "EditMeasurement",
    "LoraEdit",
    "ablation_edit",
    "ablation_reference",
    "build_edit",
    "corpus_contexts",
    "clean_threshold",
    "distill_edit",
    "export_edit",
    "gated_edit",
    "head_edit",
    "mean_difference",
    "multi_feature_ablate",
    "multi_feature_clamp",
    "realise",
    "load_edit",
    "measure_edit",
    "model_sha256",
    "orthonormal_directions",
    "reference_for",
    "sae_sha256",
    "split_contexts",
]
