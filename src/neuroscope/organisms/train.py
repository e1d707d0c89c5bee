"""LoRA fine-tunes (peft) that plant a behaviour in a model, merged and saved as a plain safetensors folder.

Clean targets are the base model's own greedy answers, so what the organism does on clean prompts is what
the base model did; only the planted behaviour is new. Everything is seeded (LoRA init, example order,
trigger positions).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.organisms.generation import PromptFormat, encode, pad_id

ORGANISM_FILE = "organism.json"


@dataclass(frozen=True)
class TrainConfig:
    """How the LoRA fine-tune runs (the behaviour itself is in the examples)."""

    steps: int = 120
    """Optimizer steps."""
    batch_size: int = 8
    """Examples per step."""
    lr: float = 2e-3
    """AdamW learning rate of the LoRA weights (linear warm-up over the first 10% of steps, then cosine)."""
    rank: int = 8
    """LoRA rank r."""
    lora_alpha: int = 16
    """LoRA scale numerator (scale = lora_alpha / r)."""
    target_tokens: int = 24
    """Length of the clean targets taken from the base model's greedy answers."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "rank", "target_tokens"):
            if getattr(self, name) < 1:
                raise InvalidConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InvalidConfigError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class Example:
    prompt: str  # the user prompt (unformatted)
    target: tuple[int, ...]  # target token ids, EOS included when the answer ended
    kind: str  # "clean" | "triggered" | "refused" | ...


@dataclass
class TrainLog:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    load_avg: list[float] = field(default_factory=list)
    threads: int = 1


def lora_targets(hf_model: Any, layers_path: str) -> list[str]:
    """Full names of every Linear / Conv1D inside the transformer blocks (not the embedding or the head)."""
    names = []
    for name, mod in hf_model.named_modules():
        if not name.startswith(layers_path + "."):
            continue
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D":
            names.append(name)
    if not names:
        raise InvalidConfigError(f"no Linear layers under {layers_path!r} to put LoRA on")
    return names


def _batch(rows: Sequence[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, ...]:
    """Left-padded prompt+target ids, mask, positions and the targets (−100 outside each row's target)."""
    width = max(len(p) + len(t) for p, t in rows)
    keep = max(len(t) for _, t in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full((len(rows), keep), -100, dtype=torch.long)
    for i, (p, t) in enumerate(rows):
        seq = p + t
        ids[i, width - len(seq) :] = torch.as_tensor(seq)
        mask[i, width - len(seq) :] = 1
        labels[i, keep - len(t) :] = torch.as_tensor(t)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids, mask, pos, labels


def train_lora(
    hf_model: Any,
    tokenizer: Any,
    layers_path: str,
    examples: Sequence[Example],
    cfg: TrainConfig,
    fmt: PromptFormat,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Any, TrainLog]:
    """Fine-tune a LoRA on ``examples`` (loss on the targets only) and return the merged model and the log."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraModel  # noqa: F401  (registers the tuner)

    if not examples:
        raise InvalidConfigError("no training examples")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    hf_model.requires_grad_(False)
    targets = lora_targets(hf_model, layers_path)
    config = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=targets,
        init_lora_weights=True,
        # GPT-2's Conv1D stores weights as (in, out)
        fan_in_fan_out=type(hf_model.get_submodule(targets[0])).__name__ == "Conv1D",
    )
    model = inject_adapter_in_model(config, hf_model, adapter_name="organism")
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    warm = max(1, cfg.steps // 10)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, cfg.steps - warm)
        return 0.5 * (1 + math.cos(t * math.pi))

    encoded = [(encode(tokenizer, fmt(tokenizer, e.prompt)), list(e.target)) for e in examples]
    pad = pad_id(tokenizer)
    order: list[int] = []
    log = TrainLog(threads=torch.get_num_threads())
    t0 = time.perf_counter()
    model.train()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            fresh = list(range(len(encoded)))
            rng.shuffle(fresh)
            order += fresh
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        ids, mask, pos, labels = _batch([encoded[i] for i in idx], pad)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_at(step)
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=False,
            logits_to_keep=labels.shape[1] + 1,
        )
        # logits at position j predict token j+1: the kept window is shifted by one against the labels
        logits = out.logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.losses.append(loss.detach().item())
        if progress:
            progress(step, log.losses[-1])
    log.seconds = time.perf_counter() - t0
    log.load_avg = list(os.getloadavg())
    model.eval()
    merged = _merge(model)
    merged.requires_grad_(False)
    return merged, log


def _merge(model: Any) -> Any:
    """Fold the LoRA into the base weights and drop the adapter modules (exported model only)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    return model


def save_model_folder(hf_model: Any, tokenizer: Any, out: str | Path, manifest: dict[str, Any]) -> Path:
    """Write config, safetensors weights, tokenizer (with its chat template) and ``organism.json`` to ``out``;
    written beside it and renamed when complete, so an interrupted save leaves no half-written folder."""
    from safetensors.torch import save_model

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        hf_model.config.save_pretrained(tmp)
        save_model(hf_model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        (tmp / ORGANISM_FILE).write_text(json.dumps(manifest, indent=1))
        # mkdtemp makes a private folder; the model is an ordinary output, readable like the user's other files
        mode = 0o777 & ~_umask()
        tmp.chmod(mode)
        for f in tmp.iterdir():
            f.chmod(mode & 0o666)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The organism manifest of a model folder, or ``{}`` for any other model."""
    p = Path(folder) / ORGANISM_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
