"""A LoRA edit: per target module the factors ``A [r, in]`` and ``B [out, r]`` (scale 1: ``lora_alpha = r``),
and what it was made from. Saved as a plain PEFT adapter folder (``adapter_config.json`` +
``adapter_model.safetensors``, readable by ``PeftModel.from_pretrained``) plus ``edit.json``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuroscope.errors import (
    CorruptDataError,
    RankOutOfRangeError,
    ResourceNotFoundError,
    UnsafeFormatError,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
EDIT_FILE = "edit.json"
MIN_RANK, MAX_RANK = 4, 16
PEFT_PREFIX = "base_model.model."  # how PeftModel.save_pretrained prefixes adapter keys


def check_rank(rank: int, needed: int = 0) -> None:
    if not MIN_RANK <= rank <= MAX_RANK:
        raise RankOutOfRangeError(f"LoRA rank must be in {MIN_RANK}..{MAX_RANK}, got {rank}.")
    if needed > rank:
        raise RankOutOfRangeError(
            f"{needed} independent directions need rank >= {needed}, got rank {rank}: raise --rank "
            f"(at most {MAX_RANK}) or select fewer features."
        )


@dataclass
class LoraEdit:
    """``modules[path] = (A, B)``; the module's output gains ``B @ A @ input`` (for an embedding, row
    ``t`` of the table gains ``B @ A[:, t]``). ``info`` is the manifest: method, SAE, features, exactness,
    measured effects."""

    rank: int
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]
    embedding: frozenset[str] = frozenset()
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path, (A, B) in self.modules.items():
            if A.shape[0] != self.rank or B.shape[1] != self.rank:
                raise RankOutOfRangeError(
                    f"{path}: factors have rank {A.shape[0]}/{B.shape[1]}, the edit says {self.rank}"
                )

    @property
    def target_modules(self) -> list[str]:
        return list(self.modules)

    def delta(self, path: str) -> torch.Tensor:
        """``ΔW [out, in]`` of one module."""
        A, B = self.modules[path]
        return B.float() @ A.float()

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info,
            "rank": self.rank,
            "lora_alpha": self.rank,
            "target_modules": self.target_modules,
        }

    def figure(self) -> Any:
        """Size of the edit per target module (Frobenius norm of ΔW)."""
        import plotly.graph_objects as go

        norms = [float(self.delta(p).norm()) for p in self.modules]
        fig = go.Figure(go.Bar(x=list(self.modules), y=norms))
        fig.update_layout(
            title=f"LoRA edit ({self.info.get('method', '?')}, rank {self.rank}): ‖ΔW‖ per module",
            xaxis_title="module",
            yaxis_title="‖ΔW‖_F",
        )
        return fig

    # --- PEFT folder --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Keys exactly as ``PeftModel.save_pretrained`` writes them for the default adapter."""
        out = {}
        for path, (A, B) in self.modules.items():
            if path in self.embedding:
                out[f"{PEFT_PREFIX}{path}.lora_embedding_A"] = A
                out[f"{PEFT_PREFIX}{path}.lora_embedding_B"] = B
            else:
                out[f"{PEFT_PREFIX}{path}.lora_A.weight"] = A
                out[f"{PEFT_PREFIX}{path}.lora_B.weight"] = B
        return {k: v.detach().float().contiguous().cpu() for k, v in out.items()}

    def peft_config(self, base_model: str = "") -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.rank,
            target_modules=sorted(self.modules),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
            base_model_name_or_path=base_model or None,
        )

    def save(self, folder: str | os.PathLike, with_info: bool = True) -> Path:
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.peft_config(str(self.info.get("model", ""))).save_pretrained(str(out))
        save_file(self.state_dict(), str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        if with_info:
            (out / EDIT_FILE).write_text(json.dumps(self.to_dict(), indent=2))
        return out


def read_adapter_config(folder: Path) -> dict[str, Any]:
    f = folder / ADAPTER_CONFIG
    if not f.exists():
        raise ResourceNotFoundError(f"No {ADAPTER_CONFIG} in {folder}: a LoRA folder is a PEFT adapter.")
    try:
        cfg = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptDataError(f"{f} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise CorruptDataError(f"{f} must hold a JSON object.")
    return cfg


def load_edit(folder: str | os.PathLike) -> LoraEdit:
    """Read a PEFT LoRA folder (ours or anyone's, as long as it is a plain LoRA in safetensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(folder)
    if not p.is_dir():
        raise ResourceNotFoundError(f"LoRA folder {p} does not exist.")
    for bad in ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth"):
        if (p / bad).exists():
            raise UnsafeFormatError(
                f"{p / bad} is a pickle-based weight file: refused (NeuroScope reads safetensors only)."
            )
    cfg = read_adapter_config(p)
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise CorruptDataError(f"{p / ADAPTER_CONFIG}: peft_type {cfg.get('peft_type')!r} is not LORA.")
    r, alpha = cfg.get("r"), cfg.get("lora_alpha", cfg.get("r"))
    if not isinstance(r, int) or not isinstance(alpha, (int, float)):
        raise CorruptDataError(f"{p / ADAPTER_CONFIG} lacks an integer 'r' or a numeric 'lora_alpha'.")
    check_rank(r)
    wfile = p / ADAPTER_WEIGHTS
    if not wfile.exists():
        raise ResourceNotFoundError(f"No {ADAPTER_WEIGHTS} in {p}.")
    try:
        state = load_file(str(wfile), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptDataError(f"LoRA weights {wfile} cannot be read as safetensors: {e}") from e
    scale = float(alpha) / r if not cfg.get("use_rslora") else float(alpha) / r**0.5
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    embedding: set[str] = set()
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in state.items():
        k = key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key
        for suffix, slot, emb in (
            (".lora_A.weight", "A", False),
            (".lora_B.weight", "B", False),
            (".lora_embedding_A", "A", True),
            (".lora_embedding_B", "B", True),
        ):
            if k.endswith(suffix):
                path = k[: -len(suffix)]
                parts.setdefault(path, {})[slot] = t.float()
                if emb:
                    embedding.add(path)
                break
        else:
            raise CorruptDataError(
                f"{wfile}: {key!r} is not a LoRA factor (lora_A/lora_B/lora_embedding_A|B)."
            )
    for path, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise CorruptDataError(f"{wfile}: {path} has only lora_{''.join(ab)}.")
        modules[path] = (ab["A"], ab["B"] * scale)  # scale folded in: our edits always run with scale 1
    info: dict[str, Any] = {}
    if (p / EDIT_FILE).exists():
        try:
            info = json.loads((p / EDIT_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptDataError(f"{p / EDIT_FILE} is not valid JSON: {e}") from e
    listed = cfg.get("target_modules")
    if isinstance(listed, list) and set(listed) != set(modules):
        extra = sorted(set(modules) - set(listed))
        if extra:
            raise CorruptDataError(
                f"{wfile} holds factors for modules its config does not target: {', '.join(extra[:3])}"
            )
    return LoraEdit(rank=r, modules=modules, embedding=frozenset(embedding), info=info)
