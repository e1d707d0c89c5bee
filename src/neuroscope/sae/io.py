"""SAELens-compatible folders: ``cfg.json`` + ``sae_weights.safetensors``.

Weights: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc [d_sae]``, ``b_dec [d_in]``, and the
architecture's extra tensors (``threshold [d_sae]`` for JumpReLU, BatchTopK and Matryoshka).
``architecture`` is the SAELens inference architecture the SAE runs as (``standard`` for ReLU + L1,
``topk``, and ``jumprelu`` for JumpReLU, BatchTopK and Matryoshka, as SAELens saves the latter two);
``neuroscope_architecture`` and the architecture's parameters (``k``, ``matryoshka_widths``, ...) are
written beside it, where SAELens ignores them. Hook and model go in ``metadata`` as SAELens writes
them. Weights are read with safetensors only (never pickle)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from neuroscope.errors import CorruptDataError, InvalidConfigError, ResourceNotFoundError
from neuroscope.sae.archs import from_saelens, get_architecture
from neuroscope.sae.config import SAEConfig
from neuroscope.sae.model import SAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
BASE_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")


def save_sae(sae: SAE, path: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    c = sae.cfg
    arch = get_architecture(c.arch)
    cfg: dict[str, Any] = {
        "architecture": arch.saelens,
        "neuroscope_architecture": c.arch,
        "d_in": c.d_in,
        "d_sae": c.d_sae,
        "dtype": c.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"hook_name": c.hook_name, "model_name": c.model_name, "prepend_bos": True},
    }
    cfg.update(arch.saelens_cfg(c))
    tensors = {
        n: getattr(sae, n).detach().to(torch.float32).contiguous().cpu() for n in BASE_TENSORS + arch.tensors
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
    """Load an SAE folder written by us (every architecture) or by SAELens (``standard``, ``topk`` and
    ``jumprelu``, which is also how SAELens saves BatchTopK and Matryoshka SAEs)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_dir():
        raise ResourceNotFoundError(f"SAE folder {p} does not exist.")
    raw = _read_cfg(p)
    try:
        arch_name = from_saelens(str(raw.get("architecture", "standard")), raw.get("neuroscope_architecture"))
    except InvalidConfigError as e:
        raise InvalidConfigError(f"{e} (in {p / CFG_FILE})") from e
    arch = get_architecture(arch_name)
    for key in ("d_in", "d_sae"):
        if not isinstance(raw.get(key), int):
            raise CorruptDataError(f"SAE config {p / CFG_FILE} lacks an integer {key!r}.")
    if raw.get("normalize_activations", "none") not in ("none", None):
        raise InvalidConfigError(
            f"{p / CFG_FILE} asks for normalize_activations={raw['normalize_activations']!r}; only 'none' is "
            "supported (fold the scaling into the weights first, as SAELens does when it saves)."
        )
    meta = raw.get("metadata") or {}
    params = {key: raw[key] for key in arch.cfg_keys if raw.get(key) is not None}
    if "k" in params:
        params["k"] = int(params["k"])
    cfg = SAEConfig(
        d_in=raw["d_in"],
        d_sae=raw["d_sae"],
        arch=arch_name,
        hook_name=str(meta.get("hook_name") or raw.get("hook_name") or ""),
        model_name=str(meta.get("model_name") or raw.get("model_name") or ""),
        **params,
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
    try:
        extra = arch.load_tensors(state, cfg.d_sae)
    except KeyError as e:
        raise CorruptDataError(
            f"SAE weights {wfile} lack {e.args[0]}, which a {arch_name} SAE needs (found: {', '.join(sorted(state))})."
        ) from e
    for k, t in extra.items():
        if tuple(t.shape) != (cfg.d_sae,):
            raise CorruptDataError(
                f"SAE weights {wfile}: {k} has shape {tuple(t.shape)}, expected ({cfg.d_sae},)."
            )
    state = {k: state[k].float() for k in expected} | {k: t.float() for k, t in extra.items()}
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
        for k in state:
            getattr(sae, k).copy_(state[k])
    return sae.to(device)
