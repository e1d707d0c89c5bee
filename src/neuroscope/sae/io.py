"""SAELens-compatible folders: ``cfg.json`` + ``sae_weights.safetensors``.

Weights: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc [d_sae]``, ``b_dec [d_in]``; TopK's ``k``
is in ``cfg.json`` (SAELens keeps it there too). ``architecture`` is SAELens's name (``standard`` for
ReLU + L1, ``topk``); hook and model go in ``metadata`` as SAELens writes them. Weights are read with
safetensors only (never pickle)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from neuroscope.errors import CorruptDataError, InvalidConfigError, ResourceNotFoundError
from neuroscope.sae.config import ARCHITECTURES, SAELENS_ARCH, SAEConfig
from neuroscope.sae.model import SAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
FROM_SAELENS = {v: k for k, v in SAELENS_ARCH.items()}


def save_sae(sae: SAE, path: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    c = sae.cfg
    cfg: dict[str, Any] = {
        "architecture": SAELENS_ARCH[c.arch],
        "d_in": c.d_in,
        "d_sae": c.d_sae,
        "dtype": c.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"hook_name": c.hook_name, "model_name": c.model_name, "prepend_bos": True},
    }
    if c.arch == "topk":
        cfg["k"] = c.k
        cfg["rescale_acts_by_decoder_norm"] = False
    else:
        cfg["l1_coefficient"] = c.l1_coefficient
    tensors = {
        n: getattr(sae, n).detach().to(torch.float32).contiguous().cpu()
        for n in ("W_enc", "W_dec", "b_enc", "b_dec")
    }
    save_file(tensors, str(out / WEIGHTS_FILE))
    (out / CFG_FILE).write_text(json.dumps(cfg, indent=2))
    return out


def _read_cfg(path: Path) -> dict[str, Any]:
    f = path / CFG_FILE
    if not f.exists():
        raise ResourceNotFoundError(
            f"No {CFG_FILE} in {path}: an SAE folder holds {CFG_FILE} and {WEIGHTS_FILE}."
        )
    try:
        cfg = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptDataError(f"SAE config {f} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise CorruptDataError(f"SAE config {f} must be a JSON object, got {type(cfg).__name__}.")
    return cfg


def load_sae(path: str | os.PathLike, device: str | torch.device = "cpu") -> SAE:
    """Load an SAE folder written by us or by SAELens (``standard`` and ``topk`` architectures)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_dir():
        raise ResourceNotFoundError(f"SAE folder {p} does not exist.")
    raw = _read_cfg(p)
    arch_name = raw.get("architecture", "standard")
    if arch_name not in FROM_SAELENS:
        raise InvalidConfigError(
            f"Unknown SAE architecture {arch_name!r} in {p / CFG_FILE}; valid architectures: "
            f"{', '.join(SAELENS_ARCH[a] for a in ARCHITECTURES)} (SAELens names)."
        )
    for key in ("d_in", "d_sae"):
        if not isinstance(raw.get(key), int):
            raise CorruptDataError(f"SAE config {p / CFG_FILE} lacks an integer {key!r}.")
    if raw.get("normalize_activations", "none") not in ("none", None):
        raise InvalidConfigError(
            f"{p / CFG_FILE} asks for normalize_activations={raw['normalize_activations']!r}; only 'none' is "
            "supported (fold the scaling into the weights first, as SAELens does when it saves)."
        )
    meta = raw.get("metadata") or {}
    cfg = SAEConfig(
        d_in=raw["d_in"],
        d_sae=raw["d_sae"],
        arch=FROM_SAELENS[arch_name],
        k=int(raw.get("k", 32) or 32),
        l1_coefficient=float(raw.get("l1_coefficient", 5.0) or 0.0),
        hook_name=str(meta.get("hook_name") or raw.get("hook_name") or ""),
        model_name=str(meta.get("model_name") or raw.get("model_name") or ""),
    )
    wfile = p / WEIGHTS_FILE
    if not wfile.exists():
        raise ResourceNotFoundError(f"No {WEIGHTS_FILE} in {p}.")
    try:
        state = load_file(str(wfile), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptDataError(f"SAE weights {wfile} cannot be read as safetensors: {e}") from e
    expected = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_enc": (cfg.d_sae,),
        "b_dec": (cfg.d_in,),
    }
    missing = [k for k in expected if k not in state]
    if missing:
        raise CorruptDataError(
            f"SAE weights {wfile} lack {', '.join(missing)} (found: {', '.join(sorted(state))})."
        )
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise CorruptDataError(
                f"SAE weights {wfile}: {k} has shape {tuple(state[k].shape)}, expected {shape}."
            )
    state = {k: state[k].float() for k in expected}
    with torch.no_grad():
        if cfg.arch == "topk" and raw.get("rescale_acts_by_decoder_norm"):
            # SAELens's TopK training layout: latents are scaled by their decoder row norm before the top-k
            # and in the decode. Folding the norms into the encoder (as SAELens does when it saves an
            # inference SAE) gives the same top-k and the same output with unit-norm decoder rows.
            norms = state["W_dec"].norm(dim=-1).clamp_min(1e-8)
            state["W_dec"] = state["W_dec"] / norms[:, None]
            state["W_enc"] = state["W_enc"] * norms[None, :]
            state["b_enc"] = state["b_enc"] * norms
        if raw.get("apply_b_dec_to_input", True) is False:
            # we always encode x - b_dec; SAELens may encode x: move b_dec's share into b_enc
            state["b_enc"] = state["b_enc"] + state["b_dec"] @ state["W_enc"]
    sae = SAE(cfg)
    with torch.no_grad():
        for k in expected:
            getattr(sae, k).copy_(state[k])
    return sae.to(device)
