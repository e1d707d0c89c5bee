"""The training loop: seeded, checkpointed, with a progress bar and a JSON-lines loss log."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuroscope.train.config import TrainConfig
from neuroscope.train.data import load_text_ids, mixed_batch, skip_permutation
from neuroscope.train.model import build_model, checkpoint_path, save_checkpoint, tokenizer

LOSS_LOG = "loss_log.jsonl"
CONFIG_FILE = "train_config.json"


@dataclass
class TrainResult:
    """What a run did: per-step losses, where its checkpoints are, and how long it took."""

    out: str
    config: dict[str, Any]
    losses: list[float]
    checkpoints: list[tuple[int, str]]
    seconds: float
    steps_per_second: float = field(default=0.0)
    cpu_seconds: float = field(default=0.0)
    """Process CPU time (all threads): what the run cost, separate from waiting on a shared machine."""
    load_average: float | None = None
    """Mean 1-minute load average at the checkpoints: how busy the (possibly shared) machine was."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "config": self.config,
            "first_loss": self.losses[0] if self.losses else None,
            "final_loss": self.losses[-1] if self.losses else None,
            "checkpoints": [{"step": s, "path": p} for s, p in self.checkpoints],
            "seconds": self.seconds,
            "steps_per_second": self.steps_per_second,
            "cpu_seconds": self.cpu_seconds,
            "load_average": self.load_average,
        }


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr


def head_norms(model: Any, layers: range) -> torch.Tensor:
    """Frobenius norm of each head's (W_Q, W_K, W_V, W_O) in ``layers``, flattened ``[len(layers) * n_heads]``."""
    d, n = model.config.n_embd, model.config.n_head
    dh = d // n
    norms = []
    for layer in layers:
        attn = model.transformer.h[layer].attn
        qkv = attn.c_attn.weight.view(d, 3, n, dh)  # Conv1D: [in, out]; out = q | k | v, each head-major
        o = attn.c_proj.weight.view(n, dh, d)  # rows: the concatenated heads' outputs
        sq = qkv.pow(2).sum(dim=(0, 1, 3)) + o.pow(2).sum(dim=(1, 2))
        norms.append(sq.sqrt())
    return torch.cat(norms)


def train(cfg: TrainConfig, out: str | Path, progress: bool = True) -> TrainResult:
    """Train from scratch into ``out``: ``out/checkpoints/step-NNNNNN/`` at each checkpoint step, and the final
    model in ``out`` itself, so ``load_model(out)`` opens the trained model."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / CONFIG_FILE)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tok = tokenizer()
    special = dict(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model = build_model(cfg, len(tok), special)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # plain AdamW on everything, no clipping: the recipe that formed the circuit in our trials (docs/induction)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    text_ids = load_text_ids(cfg.text, tok) if cfg.text else None
    perm = skip_permutation(cfg)
    marker = tok.eos_token_id if cfg.skip_marker else tok.bos_token_id
    ckpt_steps = set(cfg.checkpoint_steps())
    checkpoints: list[tuple[int, str]] = []
    losses: list[float] = []
    loads: list[float] = []

    def checkpoint(step: int, loss: float | None) -> None:
        model.eval()
        meta = {"step": step, "train_loss": loss, "attn_only": cfg.attn_only, "seed": cfg.seed}
        path = save_checkpoint(model, tok, checkpoint_path(out, step), meta)
        checkpoints.append((step, str(path)))
        if hasattr(os, "getloadavg"):
            loads.append(os.getloadavg()[0])
        model.train()

    t0, cpu0 = time.perf_counter(), time.process_time()
    with open(out / LOSS_LOG, "w") as log:
        checkpoint(0, None)
        bar = tqdm(range(1, cfg.steps + 1), disable=not progress, desc="train", unit="step")
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step - 1)
            batch = mixed_batch(cfg, tok.bos_token_id, gen, text_ids, marker, perm)
            loss = model(input_ids=batch, labels=batch).loss
            objective = loss
            if cfg.head_lasso and cfg.n_layers > 1 and step > cfg.head_lasso_start:
                objective = loss + cfg.head_lasso * head_norms(model, range(1, cfg.n_layers)).sum()
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            value = loss.detach().item()
            losses.append(value)
            row = {
                "step": step,
                "loss": round(value, 5),
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 3),
            }
            log.write(json.dumps(row) + "\n")
            if step % 20 == 0:
                log.flush()
                bar.set_postfix(loss=f"{value:.3f}")
            if step in ckpt_steps:
                checkpoint(step, value)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - cpu0
    model.eval()
    save_checkpoint(
        model,
        tok,
        out / ".final",
        {
            "step": cfg.steps,
            "train_loss": losses[-1] if losses else None,
            "attn_only": cfg.attn_only,
            "seed": cfg.seed,
        },
    )
    # the run folder itself becomes a loadable model; checkpoints and logs stay beside the weights
    for f in (out / ".final").iterdir():
        f.replace(out / f.name)
    (out / ".final").rmdir()
    result = TrainResult(
        str(out),
        cfg.to_dict(),
        losses,
        checkpoints,
        seconds,
        cfg.steps / max(seconds, 1e-9),
        cpu_seconds,
        sum(loads) / len(loads) if loads else None,
    )
    (out / "train_result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
