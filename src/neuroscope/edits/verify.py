"""What an edit was measured to do, and whether that meets its goals.

Figures are taken on held-out triggered (``fire``) and clean (``quiet``) prompts, over real (unpadded) positions
after the attention sink: the attached LoRA against the hooked edit it stands for and against the unedited
model, and the exported adapter loaded in plain transformers + peft against the attached one. ``meets_goals``
checks every goal against a measured figure; a goal with no figure is a miss ("not measured"), so an adapter
is never marked as meeting goals nobody checked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.edits.host import EditHost
from neuroscope.edits.measure import kl_per_token
from neuroscope.edits.reference import FIRST_EDITABLE_POS
from neuroscope.interventions import Intervention

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

# the bars for an edit (organism-level goals, attack success and the like, are added by the caller)
DEFAULT_GOALS: dict[str, float] = {
    "triggered.kl_hooked_to_lora": 0.02,  # the LoRA matches the hooked edit
    "clean.kl_base_to_lora": 0.05,  # clean text stays as it was
    "plain_peft.max_abs_logit_diff_vs_attached": 1e-3,  # the exported file is the adapter that was measured
}


def _real(mask: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
    m = torch.ones_like(t, dtype=torch.bool) if mask is None else mask.bool().to(t.device)
    m = m.clone()
    m[:, :FIRST_EDITABLE_POS] = False
    return m


@torch.no_grad()
def logits_of(
    model: HookedModel,
    t: torch.Tensor,
    interventions: Sequence[Intervention] = (),
    edit_name: str | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    host = EditHost.of(model)
    out = []
    for i in range(0, t.shape[0], batch_size):
        b = t[i : i + batch_size].to(model.device)
        with host.use([edit_name] if edit_name else []):
            out.append(model(b, interventions=list(interventions)).float().cpu())
    return torch.cat(out)


def compare(ref: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean KL(ref ‖ other) and max |Δlogit| over the masked positions."""
    kl = kl_per_token(ref, other)[mask]
    return {
        "mean_kl": float(kl.mean()),
        "max_abs_logit_diff": float((ref - other).abs().amax(-1)[mask].max()),
    }


def measure(
    model: HookedModel,
    edit_name: str,
    reference: Sequence[Intervention],
    data: Mapping[str, torch.Tensor],
) -> dict[str, dict[str, float]]:
    """The attached edit ``edit_name`` against the hooked ``reference`` and the unedited model."""
    out: dict[str, dict[str, float]] = {}
    for kind, label in (("fire", "triggered"), ("quiet", "clean")):
        t = data[f"{kind}_heldout"]
        mask = _real(data.get(f"{kind}_heldout_mask"), t)
        base = logits_of(model, t)
        hooked = logits_of(model, t, reference)
        lora = logits_of(model, t, edit_name=edit_name)
        h_l, b_l, b_h = compare(hooked, lora, mask), compare(base, lora, mask), compare(base, hooked, mask)
        out[label] = {
            "n_prompts": int(t.shape[0]),
            "n_positions": int(mask.sum()),
            "kl_hooked_to_lora": h_l["mean_kl"],
            "max_abs_logit_diff_vs_hooked": h_l["max_abs_logit_diff"],
            "kl_base_to_lora": b_l["mean_kl"],
            "kl_base_to_hooked": b_h["mean_kl"],
            "max_abs_logit_change_hooked": b_h["max_abs_logit_diff"],
        }
    return out


def base_folder(model: HookedModel, folder: str | os.PathLike) -> Path:
    """The unedited model as a plain Hugging Face folder (peft wrappers and LoRA factors left out)."""
    from neuroscope.bundles.merge import export_merged

    return export_merged(model, [], folder)


def plain_peft_logits(base: str | os.PathLike, adapter: str | os.PathLike, t: torch.Tensor) -> torch.Tensor:
    """Logits of the exported adapter the way anyone else runs it: ``AutoModelForCausalLM`` + ``PeftModel``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32, local_files_only=True)
    plain = PeftModel.from_pretrained(hf, str(adapter))
    plain.eval()
    out = []
    with torch.no_grad():
        for i in range(0, t.shape[0], 8):
            out.append(plain(input_ids=t[i : i + 8]).logits.float().cpu())
    return torch.cat(out)


def plain_peft_check(
    model: HookedModel,
    edit_name: str,
    reference: Sequence[Intervention],
    adapter: str | os.PathLike,
    data: Mapping[str, torch.Tensor],
    base: str | os.PathLike | None = None,
) -> dict[str, float]:
    """The exported adapter in plain transformers + peft against the attached LoRA and the hooked edit, on
    the held-out triggered and clean prompts together. ``base``: the model's folder (default: written from
    the loaded model into a temporary folder)."""
    tmp = None
    if base is None:
        tmp = Path(tempfile.mkdtemp(prefix="neuroscope-plain-"))
        base = base_folder(model, tmp / "base")
    try:
        figures: dict[str, float] = {"max_abs_logit_diff_vs_attached": 0.0}
        for kind, label in (("fire", "triggered"), ("quiet", "clean")):
            t = data[f"{kind}_heldout"]
            mask = _real(data.get(f"{kind}_heldout_mask"), t)
            plain = plain_peft_logits(base, adapter, t)
            attached = logits_of(model, t, edit_name=edit_name)
            hooked = logits_of(model, t, reference)
            a, h = compare(attached, plain, mask), compare(hooked, plain, mask)
            figures["max_abs_logit_diff_vs_attached"] = max(
                figures["max_abs_logit_diff_vs_attached"], a["max_abs_logit_diff"]
            )
            figures[f"{label}_kl_hooked_to_plain"] = h["mean_kl"]
            figures[f"{label}_max_abs_logit_diff_vs_hooked"] = h["max_abs_logit_diff"]
        return figures
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def lookup(measured: Mapping[str, Any], key: str) -> float | None:
    node: Any = measured
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


def meets_goals(measured: Mapping[str, Any], goals: Mapping[str, float]) -> dict[str, Any]:
    """``{"meets_goals": bool, "goals": {key: "<= limit"}, "misses": [...]}``: each goal is an upper bound
    on the figure at ``key`` (dotted path into ``measured``); a goal without a figure is missed."""
    misses = []
    for key, limit in goals.items():
        got = lookup(measured, key)
        if got is None:
            misses.append({"goal": key, "limit": limit, "measured": None, "why": "not measured"})
        elif not got <= limit:
            misses.append({"goal": key, "limit": limit, "measured": got, "by": got - limit})
    return {
        "meets_goals": not misses,
        "goals": {k: f"<= {v:g}" for k, v in goals.items()},
        "misses": misses,
    }
