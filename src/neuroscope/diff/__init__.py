"""A tuned model against its base: ΔW spectra and directions, changed heads/MLPs/SAE features, and how ΔW's
top directions align with features found by causal localisation."""

from neuroscope.diff.compat import check_comparable
from neuroscope.diff.prompts import PromptSets, read_prompt_sets
from neuroscope.diff.run import DiffConfig, DiffResult, diff_models
from neuroscope.diff.weights import ModuleDiff, weight_diff

__all__ = [
    "DiffConfig",
    "DiffResult",
    "ModuleDiff",
    "PromptSets",
    "check_comparable",
    "diff_models",
    "read_prompt_sets",
    "weight_diff",
]
