"""Shared pieces of the graph tests: random SAE suites for any tiny model (exactness needs no training), one
trained tiny:llama suite built through the CLI (the causal check needs real features), and a tiny task."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

import neuroscope as ns
from neuroscope.sae.config import SAEConfig
from neuroscope.sae.io import save_sae
from neuroscope.sae.model import SAE

PROMPT = "the residual stream of a model carries features between layers"
NAMES = [("AB", "CD"), ("EF", "GH"), ("IJ", "KL"), ("MN", "OP")]


@functools.cache
def tiny64(model_type: str) -> ns.HookedModel:
    """A float64 tiny model: exactness bars then measure the method, not float32 rounding."""
    return ns.load_model(f"tiny:{model_type}", device="cpu", dtype=torch.float64)


def random_suite(model: ns.HookedModel, layers=(0, 1), d_sae: int = 128, k: int = 8) -> Path:
    out = Path(tempfile.mkdtemp(prefix="suite-"))
    for l in layers:
        cfg = SAEConfig(
            d_in=model.cfg.d_model,
            d_sae=d_sae,
            k=k,
            hook_name=f"blocks.{l}.hook_resid_post",
            model_name=model.cfg.name,
        )
        sae = SAE(cfg, seed=l)
        with torch.no_grad():
            sae.W_enc.mul_(10)  # random decoders: larger encoders so latents fire on these inputs
        save_sae(sae, out / f"L{l}")
    return out


@functools.cache
def trained_suite() -> Path:
    """tiny:llama, SAEs at resid_post 0 and 1, trained by `neuroscope train-sae-suite` on a synthetic corpus."""
    from sae_testutil import write_corpus

    from neuroscope.cli import main

    root = Path(tempfile.mkdtemp(prefix="suite-trained-"))
    data = root / "corpus"
    data.mkdir()
    write_corpus(data / "train.jsonl", 80, 0)
    write_corpus(data / "heldout.jsonl", 24, 1)
    (data / "corpus.json").write_text('{"train": "train.jsonl", "heldout": "heldout.jsonl"}')
    rc = main(
        [
            "train-sae-suite",
            "--model",
            "tiny:llama",
            "--layers",
            "0-1",
            "--tokens",
            "12288",
            "--heldout-tokens",
            "2048",
            "--k",
            "8",
            "--expansion",
            "4",
            "--epochs",
            "4",
            "--batch-size",
            "512",
            "--lr",
            "3e-3",
            "--ctx-len",
            "64",
            "--ce-contexts",
            "4",
            "--data",
            str(data),
            "--out",
            str(root / "suite"),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    return root / "suite"


def tiny_task() -> dict:
    """IOI-shaped pairs whose answers are single bytes (the tiny tokenizer is byte-level)."""
    return {
        "name": "tiny-ioi",
        "prompts": [
            {
                "clean": f"When {a} and {b} met, {b} gave it to ",
                "corrupted": f"When {b} and {a} met, {a} gave it to ",
                "answer": a[0],
                "wrong": b[0],
            }
            for a, b in NAMES
        ],
    }
