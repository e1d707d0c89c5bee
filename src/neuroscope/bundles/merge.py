"""``--merge OUT``: a plain Hugging Face model folder with edits merged into the weights, for servers that
reject embedding LoRA. Written from the base weights (peft wrappers stripped, LoRA factors left out) plus
``ΔW = B A`` per target; a tied embedding/unembedding pair is untied first, since the edit changes the
embedding the model reads, not the unembedding it writes with."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from neuroscope.edits.edit import LoraEdit
from neuroscope.edits.targets import module_kind
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


def merged_state(model: HookedModel, edits: Sequence[LoraEdit]) -> dict[str, torch.Tensor]:
    hf = model.hf_model
    state: dict[str, torch.Tensor] = {}
    for name, p in hf.named_parameters(remove_duplicate=False):
        if "lora_" in name:
            continue
        state[name.replace(".base_layer", "")] = p.detach().float().cpu().clone()
    for edit in edits:
        for path in edit.modules:
            key = f"{path}.weight"
            if key not in state:
                raise InvalidConfigError(f"cannot merge: the model has no weight {key}")
            delta = edit.delta(path)  # [out, in]
            kind = module_kind(hf.get_submodule(path))
            state[key] += delta.T if kind in ("embedding", "conv1d") else delta
    return state


def export_merged(model: HookedModel, edits: Sequence[LoraEdit], out: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists():
        raise InvalidConfigError(f"{out} exists: choose another --merge folder.")
    state = merged_state(model, edits)
    config = model.hf_model.config.to_dict()
    config["tie_word_embeddings"] = False
    config.pop("_name_or_path", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        model.tokenizer.save_pretrained(str(tmp))
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
