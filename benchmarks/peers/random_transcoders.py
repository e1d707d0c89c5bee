"""Random skip transcoders in circuit-tracer's layout, to exercise the loading and graph paths before trained
ones exist (``python benchmarks/peers/random_transcoders.py OUT_DIR --layers 30 --d-model 576``).

Layout (what circuit-tracer 0.5.0 reads, ``transcoder/single_layer_transcoder.py``): one
``layer_{i}.safetensors`` per layer with ``W_enc [d_tc, d_model]`` (applied as ``F.linear(x, W_enc, b_enc)``),
``b_enc [d_tc]``, ``W_dec [d_tc, d_model]``, ``b_dec [d_model]``, optional ``W_skip [d_model, d_model]``
(applied as ``x @ W_skip.T``) and, for JumpReLU, ``activation_function.threshold [d_tc]``; plus
``config.yaml`` (JSON is valid YAML) naming the files and the hooks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file


def write_random(
    out: Path, n_layers: int, d_model: int, d_tc: int, k: int, seed: int = 0, trained: Path | None = None
) -> Path:
    """``trained``: a folder of NeuroScope-trained transcoders (``transcoders.json``); its finished layers are
    referenced by absolute path (not copied) and only the missing ones are random, of the same width."""
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    names: list[str] = []
    done = {}
    if trained is not None:
        info = json.loads((trained / "transcoders.json").read_text())
        done = {int(l): str((trained / f).resolve()) for l, f in info["files"].items()}
    for layer in range(n_layers):
        if layer in done:
            names.append(done[layer])
            continue
        w_dec = torch.randn(d_tc, d_model, generator=gen)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
        tensors = {
            "W_enc": (w_dec + 0.5 * torch.randn(d_tc, d_model, generator=gen)).contiguous() / d_model**0.5,
            "b_enc": 0.1 * torch.randn(d_tc, generator=gen),
            "W_dec": (0.1 * w_dec).contiguous(),
            "b_dec": 0.01 * torch.randn(d_model, generator=gen),
            "W_skip": 0.02 * torch.randn(d_model, d_model, generator=gen),
        }
        name = f"layer_{layer}.safetensors"
        save_file(tensors, str(out / name), metadata={"format": "pt"})
        names.append(name)
    config = {
        "model_kind": "transcoder_set",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        "activation": "topk",
        "k": k,
        "scan": f"random-seed{seed}" + (f"+trained-{sorted(done)}" if done else ""),
        "transcoders": names,
    }
    (out / "config.yaml").write_text(json.dumps(config, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--d-model", type=int, default=576)
    ap.add_argument("--d-tc", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trained", default=None, help="use this folder's trained layers, random for the rest")
    a = ap.parse_args()
    write_random(
        Path(a.out), a.layers, a.d_model, a.d_tc, a.k, a.seed, Path(a.trained) if a.trained else None
    )


if __name__ == "__main__":
    main()
