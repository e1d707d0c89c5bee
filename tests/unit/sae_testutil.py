"""Shared pieces of the SAE unit tests: tiny:llama recordings of a small synthetic corpus, and one small
trained TopK SAE per session (training once keeps the SAE tier fast)."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from neuroscope.record.writer import TraceConfig, record

HOOK = "blocks.1.hook_resid_post"
WORDS = [
    "the",
    "residual",
    "stream",
    "of",
    "a",
    "model",
    "carries",
    "features",
    "between",
    "layers",
    "while",
    "attention",
    "heads",
    "move",
    "information",
    "and",
    "neurons",
    "compute",
    "functions",
    "of",
    "tokens",
    "so",
    "a",
    "sparse",
    "autoencoder",
    "splits",
    "it",
    "apart",
]


def write_corpus(path: Path, n_docs: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    docs = [
        {"id": f"d{seed}-{i}", "text": " ".join(rng.choice(WORDS, 40 + (7 * i) % 60))} for i in range(n_docs)
    ]
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return path


@functools.cache
def stores() -> tuple[Path, Path]:
    """(train, held-out) tiny:llama recordings at ``HOOK``: ~12k and ~3k tokens, disjoint texts."""
    from tinymodels import tiny

    root = Path(tempfile.mkdtemp(prefix="sae-unit-"))
    model = tiny("llama")
    out = []
    for name, n_docs, tokens, seed in (("train", 80, 12_288, 0), ("heldout", 24, 3072, 1)):
        text = write_corpus(root / f"{name}.jsonl", n_docs, seed)
        cfg = TraceConfig(
            hooks=(HOOK,),
            data=str(text),
            tokens=tokens,
            ctx_len=64,
            batch_size=8,
            shard_tokens=2048,
            dtype="float32",
        )
        record(model, cfg, root / name, progress=False)
        out.append(root / name)
    return out[0], out[1]


@functools.cache
def trained(arch: str = "topk"):
    """A small SAE trained on the train store (saved; returns the SAE, its TrainResult and its folder)."""
    from neuroscope.sae.config import TrainConfig
    from neuroscope.sae.train import train_sae

    torch.manual_seed(0)
    train, _ = stores()
    out = Path(tempfile.mkdtemp(prefix=f"sae-{arch}-"))
    tcfg = TrainConfig(
        batch_size=512, epochs=4, progress=False, dead_tokens=4096, lr=1e-3 if arch == "relu" else 3e-3
    )
    sae, result = train_sae(train, tcfg=tcfg, out=out, arch=arch, expansion=4, **ARCH_KW[arch])
    return sae, result, out


# small-run settings per architecture: a fast threshold average (a short run would leave SAELens's 0.01
# lagging), a matryoshka prefix, a JumpReLU threshold that can move within ~100 steps
ARCH_KW: dict[str, dict] = {
    "topk": {"k": 8},
    "relu": {"l1_coefficient": 0.5},
    "batchtopk": {"k": 8, "topk_threshold_lr": 0.1},
    "matryoshka": {"k": 8, "topk_threshold_lr": 0.1, "matryoshka_widths": (32, 128)},
    "jumprelu": {"l0_coefficient": 0.3, "jumprelu_init_threshold": 0.1, "jumprelu_bandwidth": 0.1},
}
