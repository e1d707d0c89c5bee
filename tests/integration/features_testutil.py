"""A small SAE on smollm2-135m's layer-15 residual, made with the documented pipeline (trace → train-sae, at
small size: ~6k tokens of the real corpus, 1152 latents), shared by the edit and bundle integration tests."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

from neuroscope.record.writer import TraceConfig, record
from neuroscope.sae import TrainConfig
from neuroscope.sae.train import train_sae

HOOK = "blocks.15.hook_resid_post"


@functools.cache
def small_sae(model, corpus: Path):
    root = Path(tempfile.mkdtemp(prefix="features-int-"))
    cfg = TraceConfig(
        hooks=(HOOK,),
        data=str(corpus),
        split="train",
        tokens=6144,
        ctx_len=64,
        batch_size=8,
        shard_tokens=2048,
        dtype="float32",
    )
    record(model, cfg, root / "acts", progress=False)
    torch.manual_seed(0)
    sae, _ = train_sae(
        root / "acts",
        tcfg=TrainConfig(batch_size=512, epochs=4, lr=2e-3, progress=False, dead_tokens=4096),
        out=root / "sae",
        arch="topk",
        k=16,
        expansion=2,
    )
    return root, sae
